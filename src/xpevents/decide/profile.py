"""Sticky bucketing data: a user's stored variations during one decision call.

This is the pure half of a user profile service (the client's
:mod:`~xpevents.client.profiles` does the lookup and the save). The semantics are
optimizely-sdk 5.7.0's ``UserProfileTracker``:

* a profile is ``{"user_id": ..., "experiment_bucket_map": {experiment_id:
  {"variation_id": ...}}}``; a looked-up dict without both keys is ignored (the user is
  decided as if it had no profile);
* a stored variation is used for **experiments only** (feature tests and A/B tests; never
  rollout rules), after the forced variation and the whitelist and before audiences: a
  stored user keeps the variation even if it no longer meets the audience or the traffic
  allocation changed;
* a stored variation id that is not (any more) a variation of the experiment is ignored,
  and the user is bucketed again (and the new variation stored);
* only a variation found by bucketing is stored; the profile is saved once at the end of
  the call, and only when something was stored; the saved ``user_id`` is the one the
  looked-up profile carried.

Where the official SDK raises on a malformed profile (an ``experiment_bucket_map`` that
is not a dict, an entry that is not a dict, an unhashable variation id) we ignore that
part and count it as malformed instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from xpevents.decide.datafile import Experiment, Variation

__all__ = [
    "PROFILE_MAP_KEY",
    "PROFILE_USER_KEY",
    "PROFILE_VARIATION_KEY",
    "StickyProfile",
    "stored_variation",
]

logger = logging.getLogger("xpevents.decisions")

PROFILE_USER_KEY: Final = "user_id"
PROFILE_MAP_KEY: Final = "experiment_bucket_map"
PROFILE_VARIATION_KEY: Final = "variation_id"


class StickyProfile:
    """One user's stored variations while a decide, activate or feature call runs."""

    __slots__ = ("bucket_map", "malformed", "updated", "user_id")

    def __init__(self, user_id: Any, bucket_map: dict[Any, Any] | None = None) -> None:
        self.user_id = user_id
        self.bucket_map: dict[Any, Any] = bucket_map if bucket_map is not None else {}
        self.updated = False
        """Whether a variation was stored (the profile is then saved)."""
        self.malformed = False
        """Whether a part of the looked-up profile could not be read."""

    @classmethod
    def from_lookup(cls, user_id: str, found: Any) -> tuple[StickyProfile, str | None]:
        """The profile for what ``lookup`` returned, and why it was not used (or ``None``)."""
        if found is None:
            return cls(user_id), "Unable to get a user profile from the UserProfileService."
        if not isinstance(found, Mapping):
            profile = cls(user_id)
            profile.malformed = True
            return profile, f"User profile is not a dict: {type(found).__name__}"
        missing = [k for k in (PROFILE_USER_KEY, PROFILE_MAP_KEY) if k not in found]
        if missing:
            return cls(user_id), f"User profile is missing keys: {', '.join(missing)}"
        bucket_map = found[PROFILE_MAP_KEY]
        if not bucket_map:
            return cls(found[PROFILE_USER_KEY]), None
        if not isinstance(bucket_map, Mapping):
            profile = cls(found[PROFILE_USER_KEY])
            profile.malformed = True
            return profile, "User profile has an experiment_bucket_map that is not a dict"
        return cls(found[PROFILE_USER_KEY], dict(bucket_map)), None

    def stored_variation_id(self, experiment_id: str) -> Any:
        """The variation id stored for the experiment, or ``None``."""
        entry = self.bucket_map.get(experiment_id)
        if entry is None:
            return None
        if not isinstance(entry, Mapping):
            self.malformed = True
            return None
        variation_id = entry.get(PROFILE_VARIATION_KEY)
        if variation_id is not None and not isinstance(variation_id, str):
            self.malformed = True
            return None
        return variation_id

    def remember(self, experiment_id: str, variation_id: str) -> None:
        """Store a variation found by bucketing; the profile will be saved."""
        self.bucket_map[experiment_id] = {PROFILE_VARIATION_KEY: variation_id}
        self.updated = True

    def as_dict(self) -> dict[str, Any]:
        """The profile in the official shape, as handed to ``save``."""
        return {PROFILE_USER_KEY: self.user_id, PROFILE_MAP_KEY: self.bucket_map}


def stored_variation(
    profile: StickyProfile, experiment: Experiment, user_id: str, reasons: list[str] | None
) -> Variation | None:
    """The variation stored for the experiment when it still exists, else ``None``."""
    variation_id = profile.stored_variation_id(experiment.id)
    if not variation_id:
        return None
    variation = experiment.variations_by_id.get(variation_id)
    if variation is None:
        logger.error('Variation ID "%s" is not in datafile.', variation_id)
        return None
    logger.info(
        'Found a stored decision. User "%s" is in variation "%s" of experiment "%s".',
        user_id,
        variation.key,
        experiment.key,
    )
    if reasons is not None:
        reasons.append(
            f'Returning previously activated variation ID "{variation.key}" of experiment '
            f'"{experiment.key}" for user "{user_id}" from user profile.'
        )
    return variation
