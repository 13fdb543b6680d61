"""The official optimizely-sdk user-context API on top of :class:`xpevents.Client`.

Code written against ``optimizely.optimizely_user_context`` ports by changing the
import::

    user = client.create_user_context("user-1", {"country": "FR"})
    decision = user.decide("checkout", [OptimizelyDecideOption.INCLUDE_REASONS])
    user.set_forced_decision(
        OptimizelyDecisionContext("checkout", "ab_rule"), OptimizelyForcedDecision("treatment")
    )
    user.track_event("purchase", {"revenue": 4200})

A context is thread-safe: attributes and forced decisions are guarded by a lock and each
``decide`` works on a snapshot of them, as the official SDK does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from xpevents.decide import Decision

__all__ = ["OptimizelyDecisionContext", "OptimizelyForcedDecision", "OptimizelyUserContext"]


@dataclass(frozen=True, slots=True)
class OptimizelyDecisionContext:
    """What a forced decision applies to: a flag, and optionally one of its rules.

    ``rule_key=None`` forces the whole flag; a rule key forces only that experiment or
    rollout rule (the flag's other rules are still evaluated before it).
    """

    flag_key: str
    rule_key: str | None = None


@dataclass(frozen=True, slots=True)
class OptimizelyForcedDecision:
    """The variation a forced decision imposes."""

    variation_key: str


_DecisionContext = OptimizelyDecisionContext
_ForcedDecision = OptimizelyForcedDecision


class FlagDecider(Protocol):
    """What a user context decides with (the client's ``flag_decisions``).

    The user context passes a snapshot of itself: its attributes, its forced decisions
    (``(flag_key, rule_key)`` → variation key) and the snapshot object, which becomes
    each decision's ``user_context``.
    """

    def decide_one(
        self,
        user_id: str,
        attributes: dict[str, Any],
        key: Any,
        options: Iterable[Any] | None,
        forced_decisions: Mapping[tuple[str, str | None], str],
        user_context: OptimizelyUserContext | None,
    ) -> Decision: ...

    def decide_many(
        self,
        user_id: str,
        attributes: dict[str, Any],
        keys: Iterable[Any] | None,
        options: Iterable[Any] | None,
        forced_decisions: Mapping[tuple[str, str | None], str],
        user_context: OptimizelyUserContext | None,
    ) -> dict[str, Decision]: ...


class UserContextClient(Protocol):
    """The part of :class:`xpevents.Client` a user context uses."""

    @property
    def flag_decisions(self) -> FlagDecider: ...

    def track(
        self,
        event_key: str,
        user_id: str,
        attributes: dict[str, Any] | None = None,
        event_tags: dict[str, Any] | None = None,
    ) -> None: ...


class OptimizelyUserContext:
    """A user (id and attributes) bound to a client, with forced decisions.

    Create it with :meth:`xpevents.Client.create_user_context`.
    """

    OptimizelyDecisionContext = OptimizelyDecisionContext
    OptimizelyForcedDecision = OptimizelyForcedDecision

    __slots__ = ("_attributes", "_decisions", "_forced", "client", "lock", "user_id")

    def __init__(
        self,
        client: UserContextClient,
        user_id: str,
        attributes: dict[str, Any] | None = None,
        *,
        _forced: dict[tuple[str, str | None], str] | None = None,
    ) -> None:
        self.client = client
        self._decisions = client.flag_decisions
        self.user_id = user_id
        self._attributes: dict[str, Any] = dict(attributes) if isinstance(attributes, dict) else {}
        # (flag_key, rule_key) -> variation_key; replaced, never mutated, so that a
        # decision in flight keeps a consistent snapshot.
        self._forced: dict[tuple[str, str | None], str] = dict(_forced) if _forced else {}
        self.lock = threading.Lock()

    # -- attributes ---------------------------------------------------------------------

    def get_user_attributes(self) -> dict[str, Any]:
        """A copy of the user's attributes."""
        with self.lock:
            return dict(self._attributes)

    def set_attribute(self, attribute_key: str, attribute_value: Any) -> None:
        """Set (or replace) one attribute of this user."""
        with self.lock:
            self._attributes[attribute_key] = attribute_value

    def as_json(self) -> dict[str, Any]:
        """``{"user_id": ..., "attributes": {...}}``."""
        return {"user_id": self.user_id, "attributes": self.get_user_attributes()}

    def _clone(self) -> OptimizelyUserContext:
        with self.lock:
            return OptimizelyUserContext(
                self.client, self.user_id, self._attributes, _forced=self._forced
            )

    # -- decisions ----------------------------------------------------------------------

    def decide(self, key: str, options: Iterable[Any] | None = None) -> Decision:
        """Decide one flag for this user (see :meth:`xpevents.Client.decide`).

        An unknown flag key gives a disabled decision whose ``reasons`` say so.
        """
        snapshot = self._clone()
        return self._decisions.decide_one(
            snapshot.user_id, snapshot._attributes, key, options, snapshot._forced, snapshot
        )

    def decide_for_keys(
        self, keys: Iterable[str], options: Iterable[Any] | None = None
    ) -> dict[str, Decision]:
        """Decide each flag of ``keys``; returns flag key -> :class:`~xpevents.Decision`."""
        snapshot = self._clone()
        return self._decisions.decide_many(
            snapshot.user_id, snapshot._attributes, keys, options, snapshot._forced, snapshot
        )

    def decide_all(self, options: Iterable[Any] | None = None) -> dict[str, Decision]:
        """Decide every flag of the datafile, in datafile order."""
        snapshot = self._clone()
        return self._decisions.decide_many(
            snapshot.user_id, snapshot._attributes, None, options, snapshot._forced, snapshot
        )

    def track_event(self, event_key: str, event_tags: dict[str, Any] | None = None) -> None:
        """Send a conversion of ``event_key`` for this user (see :meth:`xpevents.Client.track`)."""
        self.client.track(event_key, self.user_id, self.get_user_attributes(), event_tags)

    # -- forced decisions ---------------------------------------------------------------

    def set_forced_decision(
        self, decision_context: _DecisionContext, decision: _ForcedDecision
    ) -> bool:
        """Force ``decision.variation_key`` for the flag (and rule) of ``decision_context``.

        An unknown flag, rule or variation is not an error here: ``decide`` ignores an
        invalid forced decision (and says so in ``reasons``), as the official SDK does.
        """
        key = (decision_context.flag_key, decision_context.rule_key)
        with self.lock:
            forced = dict(self._forced)
            forced[key] = decision.variation_key
            self._forced = forced
        return True

    def get_forced_decision(self, decision_context: _DecisionContext) -> _ForcedDecision | None:
        """The forced decision set for ``decision_context``, or ``None``."""
        variation_key = self._forced.get((decision_context.flag_key, decision_context.rule_key))
        return None if variation_key is None else _ForcedDecision(variation_key)

    def remove_forced_decision(self, decision_context: _DecisionContext) -> bool:
        """Remove the forced decision of ``decision_context``; ``False`` when there was none."""
        key = (decision_context.flag_key, decision_context.rule_key)
        with self.lock:
            if key not in self._forced:
                return False
            forced = dict(self._forced)
            del forced[key]
            self._forced = forced
        return True

    def remove_all_forced_decisions(self) -> bool:
        """Remove every forced decision of this user context."""
        with self.lock:
            self._forced = {}
        return True

    def __repr__(self) -> str:
        return f"OptimizelyUserContext(user_id={self.user_id!r})"
