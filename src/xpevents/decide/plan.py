"""What a decision needs about one experiment or rule, computed once per config.

An :class:`ExperimentPlan` resolves the whitelist to variations, keeps the compiled
audience check and compiles the traffic allocations (the experiment's, and its group's
when the group is ``random``), so that a decision is a few lookups, one murmur3 hash per
allocation and one binary search. A :class:`RolloutRule` adds a rule's label in reasons.
:func:`cast_variable` turns a variable's value string into its type.
"""

from __future__ import annotations

import json
import logging
from bisect import bisect_right
from collections.abc import Mapping
from typing import Any

import mmh3

from xpevents.decide.audiences import AudienceCheck
from xpevents.decide.bucketing import HASH_SEED, MAX_TRAFFIC_VALUE, Allocation, hashable_key
from xpevents.decide.datafile import Experiment, ProjectConfig, Variation

logger = logging.getLogger("xpevents.decisions")

__all__ = ["CMAB_HIT", "ExperimentPlan", "RolloutRule", "cast_variable", "quick_plans"]

_hash = mmh3.hash
_bisect = bisect_right
_DANGLING = Variation("", "", None, {})
CMAB_HIT = Variation("$", "$", None, {})
"""What bucketing a CMAB experiment gives a user in its traffic: the prediction service
must choose the variation (see docs/decisions.md)."""
"""The traffic value of a range whose entity id is not a variation of the experiment."""


class ExperimentPlan:
    """Everything an experiment decision needs, precomputed once."""

    __slots__ = (
        "audience_check",
        "bucket_suffix",
        "can_bucket",
        "experiment",
        "group_allocation",
        "group_suffix",
        "in_group",
        "running",
        "traffic",
        "variations_by_key",
        "whitelist",
    )

    def __init__(self, experiment: Experiment, config: ProjectConfig) -> None:
        self.experiment = experiment
        self.running = experiment.status == "Running"
        self.variations_by_key: Mapping[str, Variation] = experiment.variations_by_key
        whitelist: dict[str, Variation] = {}
        for user_id, key in experiment.forced_variations.items():
            variation = experiment.variations_by_key.get(key)
            if variation is not None:
                whitelist[user_id] = variation
        self.whitelist: Mapping[str, Variation] = whitelist
        self.audience_check: AudienceCheck | None = experiment.audience_check
        self.can_bucket = bool(experiment.key and experiment.key.strip())
        self.bucket_suffix = experiment.id
        by_id = experiment.variations_by_id
        self.traffic: Allocation[Variation] = Allocation(
            (t.end_of_range, by_id.get(t.entity_id, _DANGLING) if t.entity_id else None)
            for t in experiment.traffic_allocation
        )
        if experiment.cmab_traffic is not None:  # CMAB: in the traffic or not, no variation
            self.traffic = Allocation([(experiment.cmab_traffic, CMAB_HIT)])
        self.in_group = experiment.group_policy == "random"
        self.group_suffix = ""
        self.group_allocation: Allocation[bool] | None = None
        if self.in_group:
            group = config.groups.get(experiment.group_id) if experiment.group_id else None
            if group is not None:
                self.group_suffix = group.id
                self.group_allocation = Allocation(
                    (t.end_of_range, t.entity_id == experiment.id if t.entity_id else None)
                    for t in group.traffic_allocation
                )

    def preset(
        self, user_id: str, forced_variation_key: str | None, reasons: list[str] | None
    ) -> Variation | None:
        """The variation forced by the client, else the whitelisted one, else ``None``.

        A forced key that is not a variation of the experiment is ignored.
        """
        if forced_variation_key is not None:
            forced = self.variations_by_key.get(forced_variation_key)
            if forced is not None:
                if reasons is not None:
                    reasons.append(
                        f'Variation "{forced.key}" is mapped to experiment '
                        f'"{self.experiment.key}" and user "{user_id}" in the forced variation map'
                    )
                return forced
        if not self.whitelist:
            return None
        whitelisted = self.whitelist.get(user_id)
        if whitelisted is not None and reasons is not None:
            reasons.append(f'User "{user_id}" is forced in variation "{whitelisted.key}".')
        return whitelisted

    def bucket(
        self, bucketing_id: str, user_id: str, reasons: list[str] | None
    ) -> Variation | None:
        """The variation the bucketing id hashes to (through the group first), or ``None``."""
        if not self.can_bucket:
            return None
        if self.in_group and not self._in_group(bucketing_id, user_id, reasons):
            if reasons is not None and self.experiment.cmab_traffic is None:
                # the official bucketer says so for a group miss too (not for CMAB)
                reasons.append("Bucketed into an empty traffic range. Returning nil.")
            return None
        # bucketing.bucket_value, inlined: this runs on every decision
        key: str | bytes = bucketing_id + self.bucket_suffix
        if not key.isascii():  # a lone surrogate would crash mmh3: see hashable_key
            key = hashable_key(bucketing_id + self.bucket_suffix)
        bucket = (_hash(key, HASH_SEED, signed=False) * MAX_TRAFFIC_VALUE) >> 32
        # Allocation.find, inlined
        traffic = self.traffic
        index = _bisect(traffic.ends, bucket)
        targets = traffic.targets
        variation = targets[index] if index < len(targets) else None
        if variation is _DANGLING:  # a range naming no variation of the experiment
            return None
        if variation is None and reasons is not None and self.experiment.cmab_traffic is None:
            reasons.append("Bucketed into an empty traffic range. Returning nil.")
        return variation

    def _in_group(self, bucketing_id: str, user_id: str, reasons: list[str] | None) -> bool:
        """Whether the user's group bucket lands on this experiment (``random`` groups)."""
        allocation = self.group_allocation
        if allocation is None:
            return False
        key: str | bytes = bucketing_id + self.group_suffix
        if not key.isascii():
            key = hashable_key(bucketing_id + self.group_suffix)
        hit = allocation.find((_hash(key, HASH_SEED, signed=False) * MAX_TRAFFIC_VALUE) >> 32)
        if reasons is None:
            return bool(hit)
        if hit is None:
            reasons.append(f'User "{user_id}" is in no experiment.')
        elif not hit:
            reasons.append(
                f'User "{user_id}" is not in experiment "{self.experiment.key}" '
                f"of group {self.group_suffix}."
            )
        else:
            reasons.append(
                f'User "{user_id}" is in experiment {self.experiment.key} '
                f"of group {self.group_suffix}."
            )
        return bool(hit)


def quick_plans(
    config: ProjectConfig, plans: Mapping[str, ExperimentPlan]
) -> dict[str, ExperimentPlan]:
    """Experiment key → plan (``plans`` is by experiment id), for the experiments where
    ``get_variation`` with no forced variation, no profile and no reasons is
    ``plan.audience_check`` then ``plan.bucket``: running, no whitelist, not CMAB, and
    the datafile usable. ``activate`` goes straight there when nothing else applies."""
    if not config.usable:
        return {}
    quick = {}
    for key, experiment in config.experiments.items():
        plan = plans.get(experiment.id)
        if (
            plan is not None
            and plan.experiment is experiment
            and plan.running
            and not plan.whitelist
            and experiment.cmab_traffic is None
        ):
            quick[key] = plan
    return quick


class RolloutRule:
    """A rollout rule, the plan it is decided by, and its label in reasons."""

    __slots__ = ("experiment", "label", "plan")

    def __init__(self, experiment: Experiment, plan: ExperimentPlan, label: str) -> None:
        self.experiment = experiment
        self.plan = plan
        self.label = label


def cast_variable(value: Any, variable_type: str) -> Any:
    """Convert a variable's value string to its type, as the official SDK does.

    ``boolean``: ``value == "true"``; ``integer``: ``int(value)``; ``double``:
    ``float(value)``; ``json``: ``json.loads(value)``; anything else: the string.
    A value that does not convert gives ``None``; a value that is not a string (the
    official SDK reads it as it is in the datafile) goes through the same calls, so an
    object default of a json variable is ``None`` and an unknown type passes it through.
    """
    try:
        if variable_type == "boolean":
            return value == "true"
        if variable_type == "integer":
            return int(value)
        if variable_type == "double":
            return float(value)
        if variable_type == "json":
            return json.loads(value)
    except (TypeError, ValueError, OverflowError, RecursionError):
        logger.error("Unable to cast value %r to %s. Returning None.", value, variable_type)
        return None
    return value
