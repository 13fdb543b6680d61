"""The feature-variable getters of :class:`~xpevents.Client` (the official names).

A mixin so that the client's module stays small: each getter reads the client's current
engine once (see :mod:`xpevents.client.lifecycle`) and asks its feature part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xpevents.client.lifecycle import Engine

__all__ = ["FeatureVariables"]


class FeatureVariables:
    """``get_feature_variable`` and its typed variants."""

    __slots__ = ()
    _engine: Engine

    def get_feature_variable(
        self,
        feature_key: str,
        variable_key: str,
        user_id: str,
        attributes: dict[str, Any] | None = None,
    ) -> Any:
        """The typed value of a flag variable for the user (its default when the flag is off)."""
        return self._engine.features.get_feature_variable(
            "get_feature_variable", feature_key, variable_key, None, user_id, attributes
        )

    def get_feature_variable_boolean(
        self,
        feature_key: str,
        variable_key: str,
        user_id: str,
        attributes: dict[str, Any] | None = None,
    ) -> bool | None:
        """Like :meth:`get_feature_variable`; ``None`` unless the variable is a boolean."""
        value: bool | None = self._engine.features.get_feature_variable(
            "get_feature_variable_boolean",
            feature_key,
            variable_key,
            "boolean",
            user_id,
            attributes,
        )
        return value

    def get_feature_variable_double(
        self,
        feature_key: str,
        variable_key: str,
        user_id: str,
        attributes: dict[str, Any] | None = None,
    ) -> float | None:
        """Like :meth:`get_feature_variable`; ``None`` unless the variable is a double."""
        value: float | None = self._engine.features.get_feature_variable(
            "get_feature_variable_double", feature_key, variable_key, "double", user_id, attributes
        )
        return value

    def get_feature_variable_integer(
        self,
        feature_key: str,
        variable_key: str,
        user_id: str,
        attributes: dict[str, Any] | None = None,
    ) -> int | None:
        """Like :meth:`get_feature_variable`; ``None`` unless the variable is an integer."""
        value: int | None = self._engine.features.get_feature_variable(
            "get_feature_variable_integer",
            feature_key,
            variable_key,
            "integer",
            user_id,
            attributes,
        )
        return value

    def get_feature_variable_string(
        self,
        feature_key: str,
        variable_key: str,
        user_id: str,
        attributes: dict[str, Any] | None = None,
    ) -> str | None:
        """Like :meth:`get_feature_variable`; ``None`` unless the variable is a string."""
        value: str | None = self._engine.features.get_feature_variable(
            "get_feature_variable_string", feature_key, variable_key, "string", user_id, attributes
        )
        return value

    def get_feature_variable_json(
        self,
        feature_key: str,
        variable_key: str,
        user_id: str,
        attributes: dict[str, Any] | None = None,
    ) -> Any:
        """Like :meth:`get_feature_variable`; ``None`` unless the variable is JSON."""
        return self._engine.features.get_feature_variable(
            "get_feature_variable_json", feature_key, variable_key, "json", user_id, attributes
        )
