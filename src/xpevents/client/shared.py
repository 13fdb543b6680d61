"""What the parts of a client share: forced variations and the collaborators.

The client's API is cut into parts (:mod:`~xpevents.client.experiments`,
:mod:`~xpevents.client.features`, :mod:`~xpevents.client.flags`) that decide with one
:class:`~xpevents.decide.decider.Decider`, check arguments with one
:class:`~xpevents.client.inputs.Inputs`, report with one
:class:`~xpevents.client.reporting.Reporter` and read one :class:`ForcedVariations`:
``set_forced_variation`` applies to plain experiments and to the experiments of flags.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple

if TYPE_CHECKING:
    import logging

    from xpevents.client.inputs import Inputs
    from xpevents.client.profiles import UserProfiles
    from xpevents.client.reporting import Reporter
    from xpevents.decide.datafile import ProjectConfig
    from xpevents.decide.decider import Decider

__all__ = ["ClientPart", "Collaborators", "ForcedVariations"]

_EMPTY: Final[Mapping[str, Any]] = {}


class ForcedVariations:
    """User id → {experiment key → variation key}, thread-safe.

    Writers take the lock and replace a user's inner dict, never mutate it, so readers
    (every decision) never take the lock and never see a half-updated map.
    """

    __slots__ = ("_by_user", "_lock", "of", "users")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_user: dict[str, dict[str, str]] = {}
        # the dict's own get: every decision reads this, and a method would add a call
        self.of: Callable[[str], Mapping[str, str] | None] = self._by_user.get
        """``of(user_id)``: the user's forced variations (experiment → variation key) or None."""
        self.users: Mapping[str, Mapping[str, str]] = self._by_user
        """User id → forced variations (read-only view; empty when nobody is forced)."""

    def set(self, user_id: str, experiment_key: str, variation_key: str) -> None:
        """Force the user into ``variation_key`` of the experiment."""
        with self._lock:
            updated = dict(self._by_user.get(user_id, _EMPTY))
            updated[experiment_key] = variation_key
            self._by_user[user_id] = updated

    def clear(self, user_id: str, experiment_key: str) -> None:
        """Forget the user's forced variation of the experiment, if any."""
        with self._lock:
            current = self._by_user.get(user_id, _EMPTY)
            if experiment_key not in current:
                return
            updated = dict(current)
            del updated[experiment_key]
            if updated:
                self._by_user[user_id] = updated
            else:
                del self._by_user[user_id]


class Collaborators(NamedTuple):
    """What every part of one client decides, checks and reports with."""

    config: ProjectConfig
    decider: Decider
    forced: ForcedVariations
    inputs: Inputs
    report: Reporter
    log: logging.Logger
    profiles: UserProfiles


class ClientPart:
    """One part of the client's API; its collaborators are attributes for the hot path."""

    __slots__ = ("_config", "_decider", "_forced", "_inputs", "_log", "_profiles", "_report")

    def __init__(self, shared: Collaborators) -> None:
        self._config, self._decider, self._forced, self._inputs, self._report, self._log = shared[
            :6
        ]
        self._profiles = shared.profiles
