"""What a flag decision answers: :class:`FlagDecision` and the decision sources."""

from __future__ import annotations

from typing import Final

import msgspec

from xpevents.decide.datafile import Experiment, Variation

__all__ = [
    "NO_ROLLOUT_DECISION",
    "SOURCE_FEATURE_TEST",
    "SOURCE_HOLDOUT",
    "SOURCE_ROLLOUT",
    "FlagDecision",
]

SOURCE_HOLDOUT: Final = "holdout"
SOURCE_FEATURE_TEST: Final = "feature-test"
SOURCE_ROLLOUT: Final = "rollout"


class FlagDecision(msgspec.Struct, frozen=True):
    """The result of a flag decision.

    ``experiment`` is the experiment, rollout rule or holdout that decided (``None``
    for a flag-level forced decision or no decision); ``source`` is ``"feature-test"``,
    ``"rollout"`` (also reported when nothing matched, as the official SDK does) or
    ``"holdout"``;
    ``enabled`` is ``variation.feature_enabled is True``-ish (truthy).
    """

    experiment: Experiment | None
    variation: Variation | None
    source: str
    enabled: bool
    holdout: FlagDecision | None = None
    """A global holdout with ``excludeTargetedDeliveries`` the user is in: its impression
    is sent as well as this decision's."""
    error: bool = False
    """The decision failed (a CMAB experiment whose prediction service is out of reach):
    the flag's decision is the official error decision, with no event."""

    @property
    def rule_key(self) -> str | None:
        """The key of the deciding experiment or rule, ``None`` when there is none."""
        return self.experiment.key if self.experiment is not None else None

    @property
    def variation_key(self) -> str | None:
        """The key of the variation, ``None`` when there is none."""
        return self.variation.key if self.variation is not None else None


NO_ROLLOUT_DECISION: Final = FlagDecision(None, None, SOURCE_ROLLOUT, False)
