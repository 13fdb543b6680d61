"""Holdout decisions, as optimizely-sdk 5.7.0 makes them.

A flag decision first tries each running global holdout in datafile order: the user is
held out when the holdout's audiences admit them and its traffic allocation buckets them
into a variation (hash of bucketing id + holdout id). A held-out user gets the holdout's
variation (source ``"holdout"``, rule key the holdout key, an impression of rule type
``"holdout"``) and no rule is evaluated; unless the holdout sets
``excludeTargetedDeliveries``: then only targeted deliveries (experiments of type ``td``,
and the rollout) are evaluated, and the holdout's impression is sent besides the rule's.
Local holdouts (``localHoldouts`` with ``includedRules``) are tried for one rule, after
the rule's forced decision and before the rule itself (experiments and rollout rules).
Stickiness (user profiles) never applies to holdouts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import msgspec

from xpevents.decide.bucketing import get_bucketing_id
from xpevents.decide.datafile import Experiment, Flag, Holdout, ProjectConfig, Variation
from xpevents.decide.outcome import SOURCE_HOLDOUT, FlagDecision
from xpevents.decide.plan import ExperimentPlan

__all__ = ["SOURCE_HOLDOUT", "HoldoutPlans", "audience_lines"]


def audience_lines(reasons: list[str], label: str, plan: ExperimentPlan, admitted: bool) -> None:
    """The official audience-evaluation reasons for an experiment, rule or holdout.

    ``label`` is ``experiment "key"`` or ``rule 1`` (``rule Everyone Else``).
    """
    exp = plan.experiment
    tree: Any = exp.audience_conditions
    if tree is None:
        tree = list(exp.audience_ids)
    reasons.append(f"Evaluating audiences for {label}: {json.dumps(tree)}.")
    result = "TRUE" if admitted else "FALSE"
    reasons.append(f"Audiences for {label} collectively evaluated to {result}.")


class HoldoutPlans:
    """The plans of a config's holdouts, and one holdout's decision for a user."""

    __slots__ = ("_plans", "global_holdouts", "rule_holdouts")

    def __init__(self, config: ProjectConfig) -> None:
        self.global_holdouts = config.global_holdouts
        self.rule_holdouts: Mapping[str, tuple[Holdout, ...]] = config.rule_holdouts
        holdouts = [*config.global_holdouts]
        for scoped in config.rule_holdouts.values():
            holdouts.extend(scoped)
        self._plans = {id(h): ExperimentPlan(h.experiment, config) for h in holdouts}

    def bucket(
        self,
        holdout: Holdout,
        user_id: str,
        bucketing_id: str,
        attributes: Mapping[str, Any],
        reasons: list[str] | None,
    ) -> Variation | None:
        """The holdout variation the user is held out in, or ``None``."""
        plan = self._plans[id(holdout)]
        key = holdout.experiment.key
        check = plan.audience_check
        admitted = check is None or check(attributes)
        if reasons is not None:
            value = attributes.get("$opt_bucketing_id") if attributes else None
            if value is not None and not isinstance(value, str):
                reasons.append("Bucketing ID attribute is not a string. Defaulted to user_id.")
            audience_lines(reasons, f'experiment "{key}"', plan, admitted)
        if not admitted:
            if reasons is not None:
                reasons.append(
                    f"User '{user_id}' does not meet the conditions for holdout '{key}'."
                )
            return None
        variation = plan.bucket(bucketing_id, user_id, reasons)
        if reasons is not None:
            if variation is None:
                reasons.append(
                    f"User '{user_id}' is not bucketed into any variation for holdout '{key}'."
                )
            else:
                reasons.append(
                    f"The user '{user_id}' is bucketed into variation '{variation.key}' "
                    f"of holdout '{key}'."
                )
        return variation

    def global_decision(
        self, flag: Flag, user_id: str, attributes: Mapping[str, Any], reasons: list[str] | None
    ) -> FlagDecision | None:
        """The first global holdout the user is in (``holdout`` set: rules still run)."""
        bucketing_id = get_bucketing_id(user_id, attributes) if attributes else user_id
        for holdout in self.global_holdouts:
            variation = self.bucket(holdout, user_id, bucketing_id, attributes, reasons)
            if variation is None:
                continue
            key = holdout.experiment.key
            if reasons is not None:
                reasons.append(
                    f"The user '{user_id}' is bucketed into holdout '{key}' "
                    f"for feature flag '{flag.key}'."
                )
            decision = FlagDecision(
                holdout.experiment, variation, SOURCE_HOLDOUT, bool(variation.feature_enabled)
            )
            if not holdout.exclude_targeted_deliveries:
                return decision
            if reasons is not None:
                reasons.append(
                    f"Holdout '{key}' excludes targeted deliveries. "
                    "Targeted delivery rules will be evaluated."
                )
            return msgspec.structs.replace(decision, holdout=decision)
        return None

    def local_decision(
        self,
        rule: Experiment,
        where: str,
        user_id: str,
        attributes: Mapping[str, Any],
        reasons: list[str] | None,
    ) -> FlagDecision | None:
        """The first local holdout of ``rule`` the user is in, as a decision."""
        scoped = self.rule_holdouts.get(rule.id)
        if not scoped:
            return None
        bucketing_id = get_bucketing_id(user_id, attributes) if attributes else user_id
        for holdout in scoped:
            variation = self.bucket(holdout, user_id, bucketing_id, attributes, reasons)
            if variation is not None:
                if reasons is not None:
                    reasons.append(
                        f"The user '{user_id}' is bucketed into local holdout "
                        f"'{holdout.experiment.key}' for {where} '{rule.key}'."
                    )
                enabled = bool(variation.feature_enabled)
                return FlagDecision(holdout.experiment, variation, SOURCE_HOLDOUT, enabled)
        return None
