"""Flag decisions: :class:`Decision`, :class:`OptimizelyDecideOption` and input errors.

Names and values follow the official optimizely-sdk so code written against it ports by
changing the import: ``OptimizelyDecideOption.INCLUDE_REASONS == "INCLUDE_REASONS"``, and
either the enum member or the official string is accepted wherever options are.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from xpevents.errors import InvalidInputError, UnknownKeyError

__all__ = [
    "Decision",
    "InvalidInputError",
    "OptimizelyDecideOption",
    "OptimizelyDecision",
    "UnknownKeyError",
    "UserContextLike",
    "parse_decide_options",
]

logger = logging.getLogger("xpevents.decide")


class OptimizelyDecideOption(enum.StrEnum):
    """Options of ``decide``; values are the official optimizely-sdk strings.

    - ``DISABLE_DECISION_EVENT``: do not send the impression.
    - ``ENABLED_FLAGS_ONLY``: ``decide_all`` / ``decide_for_keys`` return enabled flags only.
    - ``IGNORE_USER_PROFILE_SERVICE``: no lookup, no save: decide without the client's
      user profile service (sticky bucketing).
    - ``INCLUDE_REASONS``: fill ``Decision.reasons``.
    - ``EXCLUDE_VARIABLES``: leave ``Decision.variables`` empty.
    """

    DISABLE_DECISION_EVENT = "DISABLE_DECISION_EVENT"
    ENABLED_FLAGS_ONLY = "ENABLED_FLAGS_ONLY"
    IGNORE_USER_PROFILE_SERVICE = "IGNORE_USER_PROFILE_SERVICE"
    INCLUDE_REASONS = "INCLUDE_REASONS"
    EXCLUDE_VARIABLES = "EXCLUDE_VARIABLES"


class UserContextLike(Protocol):
    """What a :class:`Decision` needs of the user context it was made for.

    A protocol, so that the decision engine never imports the client.
    """

    def as_json(self) -> dict[str, Any]:
        """``{"user_id": ..., "attributes": {...}}``."""
        ...


_KNOWN_OFFICIAL_ONLY = frozenset(
    {"IGNORE_CMAB_CACHE", "RESET_CMAB_CACHE", "INVALIDATE_USER_CMAB_CACHE"}
)


def parse_decide_options(
    options: Iterable[Any] | None, *, strict: bool = False
) -> frozenset[OptimizelyDecideOption]:
    """Turn ``options`` (enum members or official strings) into a frozenset of enum members.

    Unknown values are logged and ignored (``strict=True``: :class:`InvalidInputError`).
    A value that is not iterable (or a bare string) counts as no options, as in the
    official SDK, with a log line.
    """
    if not options:
        return frozenset()
    if isinstance(options, str | bytes) or not isinstance(options, Iterable):
        message = f"decide options must be a list of OptimizelyDecideOption, got {options!r}"
        if strict:
            raise InvalidInputError(message)
        logger.warning("%s; ignoring them.", message)
        return frozenset()
    result: set[OptimizelyDecideOption] = set()
    for option in options:
        try:
            result.add(OptimizelyDecideOption(option))
        except ValueError:
            if isinstance(option, str) and option in _KNOWN_OFFICIAL_ONLY:
                continue  # CMAB cache options: meaningless here, harmless
            message = f"Unknown decide option {option!r}; expected one of " + ", ".join(
                o.value for o in OptimizelyDecideOption
            )
            if strict:
                raise InvalidInputError(message) from None
            logger.warning("%s. Ignoring it.", message)
    return frozenset(result)


@dataclass(frozen=True, slots=True)
class Decision:
    """The result of ``decide`` for one flag and one user.

    Attributes:
        variation_key: the variation the user gets, or ``None``.
        enabled: whether the flag is on for the user.
        variables: variable key -> typed value (empty with ``EXCLUDE_VARIABLES``).
        rule_key: the experiment or rollout rule that decided, or ``None``.
        flag_key: the flag asked about.
        user_id: the user asked about.
        reasons: human-readable reasons (filled with ``INCLUDE_REASONS``, and for errors
            such as an unknown flag key).
        user_context: the :class:`~xpevents.client.user_context.OptimizelyUserContext` the
            decision was made for (``None`` when it came from ``Client.decide``); kept
            for compatibility with the official ``OptimizelyDecision``.
    """

    variation_key: str | None = None
    enabled: bool = False
    variables: Mapping[str, Any] = field(default_factory=dict)
    rule_key: str | None = None
    flag_key: str | None = None
    user_id: str = ""
    reasons: tuple[str, ...] = ()
    user_context: UserContextLike | None = field(default=None, compare=False, repr=False)

    def as_json(self) -> dict[str, Any]:
        """The decision as a plain dict, in the official ``OptimizelyDecision.as_json`` shape."""
        return {
            "variation_key": self.variation_key,
            "enabled": self.enabled,
            "variables": dict(self.variables),
            "rule_key": self.rule_key,
            "flag_key": self.flag_key,
            "user_context": (
                self.user_context.as_json()
                if self.user_context is not None
                else {"user_id": self.user_id, "attributes": {}}
            ),
            "reasons": list(self.reasons),
        }


OptimizelyDecision = Decision
"""Alias for code ported from optimizely-sdk."""
