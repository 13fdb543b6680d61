"""The user profile service (sticky bucketing) as the client calls it.

A user profile service is any object with the official optimizely-sdk interface::

    class MyProfiles:
        def lookup(self, user_id: str) -> dict | None: ...
        def save(self, user_profile: dict) -> None: ...

(``xpevents.profiles`` ships bounded-memory, SQLite and Redis ones.) :class:`UserProfiles`
calls it as optimizely-sdk 5.7.0 does: one ``lookup`` before, and at most one ``save``
after, each ``decide``, ``decide_for_keys``, ``decide_all``, ``activate``,
``get_variation``, ``is_feature_enabled`` and feature-variable call (nothing with
``IGNORE_USER_PROFILE_SERVICE``). A service that raises, or returns something that is
not a profile, never fails the decision: it is logged as the official SDK logs it,
counted in :meth:`UserProfiles.stats`, and the user is decided without stickiness.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol, runtime_checkable

from xpevents.decide.profile import StickyProfile
from xpevents.errors import ConfigError

__all__ = ["UserProfileService", "UserProfiles", "check_profile_service"]


@runtime_checkable
class UserProfileService(Protocol):
    """The official interface: ``lookup(user_id) -> dict | None`` and ``save(profile)``."""

    def lookup(self, user_id: str) -> Any:
        """The user's profile dict, or ``None``."""
        ...

    def save(self, user_profile: dict[str, Any]) -> None:
        """Store the profile dict (``user_id`` and ``experiment_bucket_map``)."""
        ...


def check_profile_service(service: object) -> None:
    """Refuse, at construction, a user profile service without ``lookup`` and ``save``."""
    if service is None:
        return
    for method in ("lookup", "save"):
        if not callable(getattr(service, method, None)):
            raise ConfigError(
                f"user_profile_service {service!r} has no {method}() method; pass an object "
                "with lookup(user_id) and save(profile) (see xpevents.profiles), or None"
            )


class UserProfiles:
    """Looks up and saves profiles around one call; counts what went wrong."""

    __slots__ = ("_counts", "_lock", "_log", "service")

    def __init__(self, service: Any, log: logging.Logger) -> None:
        check_profile_service(service)
        self.service = service
        """The user profile service, or ``None``."""
        self._log = log
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(
            ("lookups", "found", "lookup_errors", "malformed", "saves", "save_errors"), 0
        )

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def load(self, user_id: str) -> StickyProfile | None:
        """The user's profile for one call (``None`` when there is no service)."""
        service = self.service
        if service is None:
            return None
        self._count("lookups")
        try:
            found = service.lookup(user_id)
        except Exception:
            self._count("lookup_errors")
            self._log.exception(
                'Unable to retrieve user profile for user "%s" as lookup failed.', user_id
            )
            return StickyProfile(user_id)
        profile, problem = StickyProfile.from_lookup(user_id, found)
        if problem is None:
            self._count("found")
            self._log.info("User profile loaded successfully.")
        elif profile.malformed or found is not None:
            self._count("malformed")
            profile.malformed = False  # counted once
            self._log.warning("Ignoring the user profile of %r: %s.", user_id, problem)
        return profile

    def save(self, profile: StickyProfile | None) -> None:
        """Save the profile when the call stored a variation in it."""
        if profile is None:
            return
        if profile.malformed:
            self._count("malformed")
            profile.malformed = False
        if not profile.updated or self.service is None:
            return
        self._count("saves")
        try:
            self.service.save(profile.as_dict())
        except Exception as exc:
            self._count("save_errors")
            self._log.warning(
                'Failed to save user profile of user "%s" for exception:%s".', profile.user_id, exc
            )
            return
        self._log.info('Saved user profile of user "%s".', profile.user_id)

    def stats(self) -> dict[str, int]:
        """Counters since the client was created.

        ``lookups``/``saves``: calls made; ``found``: lookups that returned a usable
        profile; ``lookup_errors``/``save_errors``: calls that raised (the decision went
        on without the profile / the new variations were not stored); ``malformed``:
        profiles (or parts of them) that were not in the official shape and were ignored.
        """
        with self._lock:
            return dict(self._counts)
