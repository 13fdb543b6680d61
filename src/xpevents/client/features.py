"""The legacy feature-flag API: ``is_feature_enabled`` and the variable getters.

The decide API (:mod:`xpevents.client.flags`) answers the same questions in one
:class:`~xpevents.Decision`; these methods keep the official SDK's older answers,
impressions and ``decision`` notifications (types ``"feature"``,
``"feature-variable"`` and ``"all-feature-variables"``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from xpevents.client.notifications import NotificationType
from xpevents.client.shared import ClientPart
from xpevents.decide.decider import SOURCE_FEATURE_TEST, SOURCE_ROLLOUT
from xpevents.decide.reasons import LoggedReasons

if TYPE_CHECKING:
    from xpevents.decide.datafile import Flag, VariableDef, Variation
    from xpevents.decide.decider import FlagDecision

__all__ = ["Features"]

_DECISION = NotificationType.DECISION
_INFO: Final = logging.INFO
_EMPTY: Final[Mapping[Any, Any]] = {}


def _variable_type(variable: VariableDef) -> str:
    """The type the official SDK reports: a JSON string variable is ``"json"``."""
    if variable.type == "string" and variable.sub_type == "json":
        return "json"
    return variable.type


def _feature_info(feature_key: str, decision: FlagDecision, **fields: Any) -> dict[str, Any]:
    """The ``decision_info`` of a feature notification, keys in the official order.

    ``fields`` go between ``feature_enabled`` and ``source_info``, in the order given.
    """
    if decision.source == SOURCE_FEATURE_TEST:
        source_info = {
            "experiment_key": decision.rule_key,
            "variation_key": decision.variation_key,
        }
    else:
        source_info = {}
    return {
        "feature_key": feature_key,
        "feature_enabled": decision.enabled,
        **fields,
        "source_info": source_info,
    }


class Features(ClientPart):
    """The bodies of the client's feature-flag methods (same names, same results)."""

    __slots__ = ()

    def _decide(self, flag: Flag, user_id: str, attributes: Any) -> FlagDecision:
        forced = self._forced.of(user_id)
        log = self._log  # the official decision lines, when it prints them
        reasons = LoggedReasons(log) if log.isEnabledFor(_INFO) else None
        if self._profiles.service is None:
            return self._decider.decide_flag(
                flag,
                user_id,
                attributes or _EMPTY,
                forced_variations=forced or _EMPTY,
                reasons=reasons,
            )
        profile = self._profiles.load(user_id)
        decision = self._decider.decide_flag(
            flag,
            user_id,
            attributes or _EMPTY,
            forced_variations=forced or _EMPTY,
            reasons=reasons,
            profile=profile,
        )
        self._profiles.save(profile)
        return decision

    def is_feature_enabled(self, feature_key: Any, user_id: Any, attributes: Any) -> bool:
        """See :meth:`xpevents.Client.is_feature_enabled`."""
        flag = self._inputs.flag("is_feature_enabled", feature_key, user_id, attributes)
        if flag is None:
            return False
        decision = self._decide(flag, user_id, attributes)
        experiment, variation, source = decision.experiment, decision.variation, decision.source
        enabled = decision.enabled
        # A feature test always sends its impression; anything else (a rollout, or no
        # variation at all) only when the datafile sets sendFlagDecisions.
        feature_test = (
            source == SOURCE_FEATURE_TEST and variation is not None and experiment is not None
        )
        other = (source == SOURCE_ROLLOUT or variation is None) and self._config.send_flag_decisions
        if feature_test or other:
            rule_key = experiment.key if experiment is not None else ""
            self._report.impression(
                experiment, variation, user_id, attributes, flag.key, rule_key, source, enabled
            )
        if self._report.listens(_DECISION):
            info = _feature_info(feature_key, decision, source=source)
            self._report.decision("feature", user_id, attributes or {}, info)
        return enabled

    def get_enabled_features(self, user_id: Any, attributes: Any) -> list[str]:
        """See :meth:`xpevents.Client.get_enabled_features`."""
        method = "get_enabled_features"
        if not (self._inputs.user(user_id, attributes, method) and self._inputs.ready(method)):
            return []
        enabled = self.is_feature_enabled
        return [key for key in self._config.flags if enabled(key, user_id, attributes)]

    def _variable(
        self, method: str, feature_key: Any, variable_key: Any, user_id: Any, attributes: Any
    ) -> tuple[Flag, VariableDef] | None:
        """The flag and the variable named, after checking every argument."""
        if not isinstance(feature_key, str) or not feature_key:
            self._inputs.invalid("feature_key", feature_key, method)
        elif not isinstance(variable_key, str) or not variable_key:
            self._inputs.invalid("variable_key", variable_key, method)
        elif (flag := self._inputs.flag(method, feature_key, user_id, attributes)) is not None:
            variable = flag.variables.get(variable_key)
            if variable is not None:
                return flag, variable
            self._inputs.unknown(f'variable (of flag "{feature_key}")', variable_key, method)
        return None

    def get_feature_variable(
        self,
        method: str,
        feature_key: Any,
        variable_key: Any,
        variable_type: str | None,
        user_id: Any,
        attributes: Any,
    ) -> Any:
        """The bodies of ``get_feature_variable`` and its typed variants (``variable_type``)."""
        found = self._variable(method, feature_key, variable_key, user_id, attributes)
        if found is None:
            return None
        flag, variable = found
        actual_type = _variable_type(variable)
        if variable_type is not None and variable_type != actual_type:
            self._inputs.wrong_variable_type(method, variable_key, actual_type, variable_type)
            return None
        decision = self._decide(flag, user_id, attributes)
        enabled = decision.enabled
        try:
            value = self._decider.variable_value(flag, variable_key, decision.variation, enabled)
        except Exception:
            self._log.exception("Unable to cast the value of variable %r.", variable_key)
            value = None
        if self._report.listens(_DECISION):
            info = _feature_info(
                feature_key,
                decision,
                source=decision.source,
                variable_key=variable_key,
                variable_value=value,
                variable_type=actual_type,
            )
            self._report.decision("feature-variable", user_id, attributes or {}, info)
        return value

    def get_all_feature_variables(
        self, feature_key: Any, user_id: Any, attributes: Any
    ) -> dict[str, Any] | None:
        """See :meth:`xpevents.Client.get_all_feature_variables`."""
        flag = self._inputs.flag("get_all_feature_variables", feature_key, user_id, attributes)
        if flag is None:
            return None
        decision = self._decide(flag, user_id, attributes)
        values = self._values(flag, decision.variation, decision.enabled)
        if self._report.listens(_DECISION):
            info = _feature_info(
                feature_key, decision, variable_values=values, source=decision.source
            )
            self._report.decision("all-feature-variables", user_id, attributes or {}, info)
        return values

    def _values(self, flag: Flag, variation: Variation | None, enabled: bool) -> dict[str, Any]:
        values: dict[str, Any] = {}
        variable_value = self._decider.variable_value
        for key in flag.variables:
            try:
                values[key] = variable_value(flag, key, variation, enabled)
            except Exception:
                self._log.exception("Unable to cast the value of variable %r.", key)
                values[key] = None
        return values
