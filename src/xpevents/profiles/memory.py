"""Profiles in the process's memory, bounded: the least recently used users go first."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from xpevents._internal.validate import positive_int
from xpevents.profiles.base import BucketMap, ProfileStore, entries_of, profile_of

__all__ = ["MemoryProfileStore"]


class MemoryProfileStore(ProfileStore):
    """A bounded in-memory user profile service (one process; lost at exit).

    Args:
        max_users: how many users' profiles are kept; the least recently looked up or
            saved goes first. Default 100,000 (a profile costs ~300 bytes per
            experiment).

    Thread-safe. A looked-up profile is a copy: changing it changes nothing stored.
    """

    name = "memory profiles"

    def __init__(self, max_users: int = 100_000) -> None:
        super().__init__()
        self.max_users = positive_int("max_users", max_users, owner="MemoryProfileStore")
        self._users: OrderedDict[str, BucketMap] = OrderedDict()

    def lookup(self, user_id: str) -> dict[str, Any] | None:
        """The user's profile (a copy), or ``None``: the fast path of one user."""
        counts = self._counts
        with self._lock:
            counts["lookups"] += 1
            entries = self._users.get(user_id)
            if entries is None:
                return None
            self._users.move_to_end(user_id)
            counts["hits"] += 1
            return profile_of(user_id, entries)

    def save(self, user_profile: dict[str, Any]) -> None:
        """Merge the profile's entries (never raises)."""
        parsed = entries_of(user_profile)
        if parsed is None:
            self._failed("save", ValueError(f"not a profile: {user_profile!r}"))
            return
        self._count("saves")
        self._store({parsed[0]: parsed[1]})

    def _fetch(self, user_ids: list[str]) -> dict[str, BucketMap]:
        found: dict[str, BucketMap] = {}
        users = self._users
        with self._lock:
            for user_id in user_ids:
                entries = users.get(user_id)
                if entries is not None:
                    users.move_to_end(user_id)
                    found[user_id] = dict(entries)
        return found

    def _store(self, batch: dict[str, BucketMap]) -> None:
        users = self._users
        with self._lock:
            for user_id, entries in batch.items():
                current = users.get(user_id)
                if current is None:
                    users[user_id] = dict(entries)
                else:
                    current.update(entries)
                    users.move_to_end(user_id)
            while len(users) > self.max_users:
                users.popitem(last=False)

    def user_count(self) -> int:
        """How many users have a profile here.

        (Not ``__len__``: optimizely-sdk tests a user profile service for truth, and an
        empty store must still be used.)
        """
        return len(self._users)
