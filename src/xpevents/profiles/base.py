"""What every profile store shares: the profile shape, counters and the failure policy."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from xpevents._internal.ratelimit import LogEvery

__all__ = ["BucketMap", "ProfileStats", "ProfileStore", "entries_of", "profile_of"]

logger = logging.getLogger("xpevents.profiles")

BucketMap = dict[str, str]
"""Experiment id -> variation id: what a store keeps per user."""

_LOG_EVERY: Final = 10.0


@dataclass(frozen=True, slots=True)
class ProfileStats:
    """Counters of one store since it was created.

    ``lookups``: users looked up; ``hits``: of those, users with a stored profile;
    ``saves``: profiles saved; ``errors``: calls that failed (the decision went on
    without stickiness); ``timeouts``: of those, the ones that ran out of time;
    ``skipped``: calls not tried while a failing store rests (Redis only).
    """

    lookups: int = 0
    hits: int = 0
    saves: int = 0
    errors: int = 0
    timeouts: int = 0
    skipped: int = 0


def profile_of(user_id: str, entries: BucketMap) -> dict[str, Any]:
    """The official profile dict for a user's stored entries."""
    return {
        "user_id": user_id,
        "experiment_bucket_map": {e: {"variation_id": v} for e, v in entries.items()},
    }


def entries_of(profile: Any) -> tuple[str, BucketMap] | None:
    """The user id and the (experiment id -> variation id) entries of a profile to save.

    ``None`` when the profile is not in the official shape; entries without a string
    variation id are left out.
    """
    if not isinstance(profile, Mapping):
        return None
    user_id = profile.get("user_id")
    bucket_map = profile.get("experiment_bucket_map")
    if not isinstance(user_id, str) or not isinstance(bucket_map, Mapping):
        return None
    entries: BucketMap = {}
    for experiment_id, entry in bucket_map.items():
        if isinstance(experiment_id, str) and isinstance(entry, Mapping):
            variation_id = entry.get("variation_id")
            if isinstance(variation_id, str):
                entries[experiment_id] = variation_id
    return user_id, entries


def storable(text: str) -> bool:
    """Whether a user or experiment id can be written (no lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class ProfileStore:
    """Base of the shipped stores: the official interface over two batch primitives.

    Subclasses implement :meth:`_fetch` (user ids -> entries of those found) and
    :meth:`_store` (user id -> entries to merge); this class counts, validates and turns
    every failure into "no profile".
    """

    name = "profiles"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(ProfileStats.__slots__, 0)
        self._log_every = LogEvery(_LOG_EVERY)

    # the official interface

    def lookup(self, user_id: str) -> dict[str, Any] | None:
        """The user's profile in the official shape, or ``None`` (unknown, or store failing)."""
        return self.lookup_many([user_id]).get(user_id)

    def save(self, user_profile: dict[str, Any]) -> None:
        """Merge the profile's entries into the store (never raises)."""
        self.save_many([user_profile])

    # the batch interface

    def lookup_many(self, user_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Profiles of the users that have one (one round trip); failures give ``{}``."""
        wanted = [u for u in dict.fromkeys(user_ids) if isinstance(u, str) and storable(u)]
        self._count("lookups", len(wanted))
        if not wanted:
            return {}
        try:
            found = self._fetch(wanted)
        except Exception as exc:
            self._failed("lookup", exc)
            return {}
        self._count("hits", len(found))
        return {user_id: profile_of(user_id, entries) for user_id, entries in found.items()}

    def save_many(self, profiles: Iterable[Mapping[str, Any]]) -> None:
        """Merge many profiles (one round trip); a failure is counted, never raised."""
        batch: dict[str, BucketMap] = {}
        for profile in profiles:
            parsed = entries_of(profile)
            if parsed is None or not storable(parsed[0]):
                self._failed("save", ValueError(f"not a storable profile: {profile!r}"))
                continue
            user_id, entries = parsed
            batch.setdefault(user_id, {}).update(
                {e: v for e, v in entries.items() if storable(e) and storable(v)}
            )
        if not batch:
            return
        self._count("saves", len(batch))
        try:
            self._store(batch)
        except Exception as exc:
            self._failed("save", exc)

    def stats(self) -> ProfileStats:
        """The counters (see :class:`ProfileStats`)."""
        with self._lock:
            return ProfileStats(**self._counts)

    # for subclasses

    def _fetch(self, user_ids: list[str]) -> dict[str, BucketMap]:
        raise NotImplementedError

    def _store(self, batch: dict[str, BucketMap]) -> None:
        raise NotImplementedError

    def _is_timeout(self, exc: BaseException) -> bool:
        return isinstance(exc, TimeoutError)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def _failed(self, what: str, exc: BaseException) -> None:
        self._count("errors")
        if self._is_timeout(exc):
            self._count("timeouts")
        if self._log_every.due(what):
            logger.warning(
                "%s: %s failed (%s: %s); deciding without sticky bucketing (counted in "
                "stats().errors)",
                self.name,
                what,
                type(exc).__name__,
                exc,
            )
