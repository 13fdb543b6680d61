"""Flag variable values for a decision: the variation's value or the default, typed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xpevents.decide.plan import cast_variable

if TYPE_CHECKING:
    from xpevents.decide.datafile import Flag, ProjectConfig, VariableDef, Variation

__all__ = ["VariableValues"]


class VariableValues:
    """The variable half of :class:`~xpevents.decide.decider.Decider`."""

    __slots__ = ()
    _config: ProjectConfig

    def variable_value(
        self, flag: Flag, variable_key: str, variation: Variation | None, enabled: bool
    ) -> Any:
        """A flag variable's typed value for a decision.

        The variation's value when the flag is enabled for that variation (and the
        variation sets the variable), else the default; converted by type (boolean,
        integer, double, string, json). Raises ``KeyError`` for an unknown variable.
        """
        variable = flag.variables[variable_key]
        return self._variable(variable, variation, enabled)

    def _variable(self, variable: VariableDef, variation: Variation | None, enabled: bool) -> Any:
        value: Any = variable.default_value
        if enabled and variation is not None:
            values = self._config.variable_values.get(variation.id)
            value = None if values is None else values.get(variable.id, variable.default_value)
        return cast_variable(value, variable.type)

    def variables(self, flag: Flag, decision: Any) -> dict[str, Any]:
        """Every variable of a flag, typed, for a decision (the ``variables`` of ``decide``)."""
        return {
            key: self._variable(variable, decision.variation, decision.enabled)
            for key, variable in flag.variables.items()
        }
