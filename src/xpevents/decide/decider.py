"""Experiment and flag decisions, with the answers of optimizely-sdk 5.7.0.

:class:`Decider` is built once per :class:`~xpevents.decide.datafile.ProjectConfig`; it
precomputes, per experiment, everything a decision needs (an
:class:`~xpevents.decide.plan.ExperimentPlan`: whitelist resolved to variations,
compiled audience check, compiled traffic allocation, group data), so a decision is a
few dictionary lookups, one murmur3 hash and one binary search.

Experiment decision (:meth:`Decider.get_variation`), in order:

1. the experiment is not ``Running``: no variation;
2. a forced variation passed in by the client (``set_forced_variation``) wins;
3. the experiment's whitelist (``forcedVariations``);
4. audiences (``audienceConditions``, else ``audienceIds``): not admitted → none;
5. bucketing, with ``$opt_bucketing_id`` when it is a string: an experiment with an
   empty key gets nothing; in a ``random`` group the user is first bucketed into the
   group (hash of bucketing id + group id) and must land on this experiment; then the
   experiment's traffic allocation.

Flag decision (:meth:`Decider.decide_flag`): a forced decision for the flag; then, for
each experiment of the flag, a forced decision for (flag, experiment key) or the
experiment decision above; then the rollout rules in order (a forced decision for
(flag, rule key), then audiences and bucketing; a user who meets a targeted rule's
audiences but is not bucketed jumps straight to the last, "everyone else", rule).
Rollout rules are evaluated whatever their status, as the official SDK does.
A user profile (sticky bucketing) applies to experiments only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import msgspec

from xpevents.decide.bucketing import get_bucketing_id
from xpevents.decide.datafile import (
    Experiment,
    Flag,
    ProjectConfig,
    Rollout,
    Variation,
)
from xpevents.decide.holdouts import HoldoutPlans, audience_lines
from xpevents.decide.outcome import (
    NO_ROLLOUT_DECISION,
    SOURCE_FEATURE_TEST,
    SOURCE_HOLDOUT,
    SOURCE_ROLLOUT,
    FlagDecision,
)
from xpevents.decide.plan import ExperimentPlan, RolloutRule, cast_variable, quick_plans
from xpevents.decide.profile import StickyProfile, stored_variation
from xpevents.decide.reasons import fresh
from xpevents.decide.rules import RuleDecisions, bucketing_id_reason
from xpevents.decide.variables import VariableValues

logger = logging.getLogger("xpevents.decisions")

__all__ = [
    "SOURCE_FEATURE_TEST",
    "SOURCE_HOLDOUT",
    "SOURCE_ROLLOUT",
    "Decider",
    "FlagDecision",
    "cast_variable",
]


_EMPTY: Mapping[Any, Any] = {}


class CmabUnavailable(Exception):
    """A user is in a CMAB experiment's traffic: only the prediction service could decide."""


def _cmab(
    experiment: Experiment, hit: Variation | None, user_id: str, reasons: list[str] | None
) -> Variation | None:
    """A CMAB experiment, with no prediction service: as optimizely-sdk when it is down."""
    if hit is None:
        if reasons is not None:
            reasons.append(
                f'User "{user_id}" not in CMAB experiment "{experiment.key}" due to traffic '
                "allocation."
            )
            reasons.append(f'User "{user_id}" is in no variation.')
        return None
    failed = f"Failed to fetch CMAB data for experiment {experiment.key}."
    logger.error("%s xpevents has no CMAB prediction service.", failed)
    if reasons is not None:
        reasons.append(failed)
    raise CmabUnavailable(experiment.key)


class Decider(RuleDecisions, VariableValues):
    """Decisions for one :class:`ProjectConfig`; stateless apart from it and thread-safe."""

    __slots__ = ("_adhoc", "_by_id", "_config", "_holdouts", "_plans", "_rollouts", "quick_plans")

    def __init__(self, config: ProjectConfig) -> None:
        self._config = config
        self._by_id = config.experiments_by_id
        self._plans: dict[str, ExperimentPlan] = {
            exp_id: ExperimentPlan(exp, config) for exp_id, exp in config.experiments_by_id.items()
        }
        self.quick_plans: Mapping[str, ExperimentPlan] = quick_plans(config, self._plans)
        """See :func:`~xpevents.decide.plan.quick_plans`."""
        # experiments not in experiments_by_id (rollout rule objects, foreign objects)
        self._adhoc: dict[int, ExperimentPlan] = {}
        self._holdouts = HoldoutPlans(config)
        self._rollouts: dict[str, tuple[tuple[RolloutRule, ...], RolloutRule]] = {}
        for rollout_id, rollout in config.rollouts.items():
            rules = self._rollout_rules(rollout)
            if rules:
                self._rollouts[rollout_id] = (rules[:-1], rules[-1])

    @property
    def config(self) -> ProjectConfig:
        """The config this decider answers for."""
        return self._config

    def _plan(self, experiment: Experiment) -> ExperimentPlan:
        plan = self._plans.get(experiment.id)
        if plan is not None and plan.experiment is experiment:
            return plan
        plan = self._adhoc.get(id(experiment))
        if plan is None or plan.experiment is not experiment:
            plan = ExperimentPlan(experiment, self._config)
            self._adhoc[id(experiment)] = plan
        return plan

    def _rollout_rules(self, rollout: Rollout) -> tuple[RolloutRule, ...]:
        """The rollout's rules with their plans and labels ("1", "2", ..., "Everyone Else")."""
        unique: dict[str, Experiment] = {}
        for rule in rollout.experiments:
            unique[rule.id] = rule  # same id: first position, last definition
        last = len(unique) - 1
        rules = []
        for index, rule in enumerate(unique.values()):
            # the official SDK evaluates the rule as indexed by id (the last definition)
            plan = self._plan(self._by_id.get(rule.id, rule))
            label = "Everyone Else" if index == last else str(index + 1)
            rules.append(RolloutRule(rule, plan, label))
        return tuple(rules)

    def get_variation(
        self,
        experiment: Experiment,
        user_id: str,
        attributes: Mapping[str, Any],
        *,
        forced_variation_key: str | None = None,
        reasons: list[str] | None = None,
        profile: StickyProfile | None = None,
    ) -> Variation | None:
        """The variation of ``experiment`` for a user, or ``None``.

        ``forced_variation_key`` is the variation set with the client's
        ``set_forced_variation`` (ignored when it is not a variation of the
        experiment). ``profile`` is the user's sticky profile (see
        :mod:`~xpevents.decide.profile`): a stored variation comes after the forced
        variation and the whitelist, and a variation found by bucketing is stored in it.
        Human-readable reasons are appended to ``reasons`` when given.
        """
        try:
            return self._get_variation(
                experiment, user_id, attributes, forced_variation_key, reasons, profile
            )
        except CmabUnavailable:
            return None  # activate / get_variation: no variation, as official

    def _get_variation(
        self,
        experiment: Experiment,
        user_id: str,
        attributes: Mapping[str, Any],
        forced_variation_key: str | None,
        reasons: list[str] | None,
        profile: StickyProfile | None,
    ) -> Variation | None:
        if not self._config.usable:
            return None
        plan = self._plans.get(experiment.id)
        if plan is None or plan.experiment is not experiment:
            plan = self._plan(experiment)
        if not plan.running:
            if reasons is not None:
                reasons.append(f'Experiment "{experiment.key}" is not running.')
            return None
        if forced_variation_key is not None or plan.whitelist:
            preset = plan.preset(user_id, forced_variation_key, reasons)
            if preset is not None:
                return preset
        if profile is not None:
            stored = stored_variation(profile, experiment, user_id, reasons)
            if stored is not None:
                return stored
        return self._admit_and_bucket(plan, user_id, attributes, reasons, profile)

    def _experiment_decision(
        self,
        experiment: Experiment,
        user_id: str,
        attributes: Mapping[str, Any],
        forced_variations: Mapping[str, str],
        reasons: list[str] | None,
        profile: StickyProfile | None,
        held: FlagDecision | None,
    ) -> FlagDecision | None:
        """One experiment of a flag: its decision, the CMAB error one, or ``None``."""
        # The official get_variation returns the reasons it was given plus its own,
        # and the flag adds them all to those it had: the earlier ones repeat.
        own: list[str] | None = None if reasons is None else fresh(reasons)
        error: FlagDecision | None = None
        try:
            variation = self._variation(
                experiment, user_id, attributes, forced_variations, own, profile
            )
        except CmabUnavailable:
            variation = None
            error = FlagDecision(experiment, None, SOURCE_FEATURE_TEST, False, error=True)
        if reasons is not None and own is not None:
            reasons.extend(reasons)
            reasons.extend(own)
        if error is not None or variation is None:
            return error
        enabled = bool(variation.feature_enabled)
        holdout = held.holdout if held is not None else None
        return FlagDecision(experiment, variation, SOURCE_FEATURE_TEST, enabled, holdout)

    def _variation(
        self,
        experiment: Experiment,
        user_id: str,
        attributes: Mapping[str, Any],
        forced_variations: Mapping[str, str],
        reasons: list[str] | None,
        profile: StickyProfile | None,
    ) -> Variation | None:
        """:meth:`get_variation` for a flag's experiment; CMAB raises CmabUnavailable."""
        forced = forced_variations.get(experiment.key) if forced_variations else None
        return self._get_variation(experiment, user_id, attributes, forced, reasons, profile)

    def _admit_and_bucket(
        self,
        plan: ExperimentPlan,
        user_id: str,
        attributes: Mapping[str, Any],
        reasons: list[str] | None,
        profile: StickyProfile | None,
    ) -> Variation | None:
        """Audiences, then bucketing (the new variation joins the profile)."""
        experiment = plan.experiment
        check = plan.audience_check
        admitted = check is None or check(attributes)
        if reasons is not None:
            audience_lines(reasons, f'experiment "{experiment.key}"', plan, admitted)
        if not admitted:
            if reasons is not None:
                reasons.append(
                    f'User "{user_id}" does not meet conditions to be in experiment '
                    f'"{experiment.key}".'
                )
            return None
        bucketing_id = get_bucketing_id(user_id, attributes) if attributes else user_id
        if reasons is not None:
            bucketing_id_reason(attributes, reasons)
        variation = plan.bucket(bucketing_id, user_id, reasons)
        if plan.experiment.cmab_traffic is not None:
            return _cmab(plan.experiment, variation, user_id, reasons)
        if reasons is not None:
            reasons.append(
                f'User "{user_id}" is in no variation.'
                if variation is None
                else f'User "{user_id}" is in variation "{variation.key}" of experiment '
                f"{experiment.key}."
            )
        if profile is not None and variation is not None:
            profile.remember(experiment.id, variation.id)
        return variation

    def decide_flag(
        self,
        flag: Flag,
        user_id: str,
        attributes: Mapping[str, Any],
        *,
        forced_variations: Mapping[str, str] = _EMPTY,
        forced_decisions: Mapping[tuple[str, str | None], str] = _EMPTY,
        reasons: list[str] | None = None,
        profile: StickyProfile | None = None,
    ) -> FlagDecision:
        """Decide a flag for a user, as the official ``decide`` does.

        ``forced_variations`` maps experiment keys to variation keys (the client's
        ``set_forced_variation``); ``forced_decisions`` maps ``(flag_key, rule_key)``
        (``rule_key`` ``None`` for the whole flag) to a variation key. ``profile``
        applies to the flag's experiments, never to its rollout rules, as official.
        """
        if not self._config.usable:
            return NO_ROLLOUT_DECISION
        if forced_decisions:
            forced = self._forced_decision(flag, None, forced_decisions, user_id, reasons)
            if forced is not None:
                return FlagDecision(None, forced, SOURCE_FEATURE_TEST, bool(forced.feature_enabled))
            if reasons:  # the flag-level reasons stay out of the official repeats
                rest = fresh(reasons)
                decision = self._decide_rules(
                    flag, user_id, attributes, forced_variations, forced_decisions, rest, profile
                )
                reasons.extend(rest)
                return decision
        return self._decide_rules(
            flag, user_id, attributes, forced_variations, forced_decisions, reasons, profile
        )

    def _decide_rules(
        self,
        flag: Flag,
        user_id: str,
        attributes: Mapping[str, Any],
        forced_variations: Mapping[str, str],
        forced_decisions: Mapping[tuple[str, str | None], str],
        reasons: list[str] | None,
        profile: StickyProfile | None,
    ) -> FlagDecision:
        """Holdouts, the flag's experiments, then its rollout."""
        held: FlagDecision | None = None
        if self._holdouts.global_holdouts:
            held = self._holdouts.global_decision(flag, user_id, attributes, reasons)
            if held is not None and held.holdout is None:
                return held  # held out: no rule is evaluated
        decision = self._decide_experiments(
            flag, user_id, attributes, forced_variations, forced_decisions, reasons, profile, held
        )
        if decision is not None:
            return decision
        if held is not None and reasons is not None:
            reasons.append(
                f'Holdout "{held.rule_key}" has excludeTargetedDeliveries enabled, '
                "continuing to rollout evaluation."
            )
        decision = self._decide_rollout(flag, user_id, attributes, forced_decisions, reasons)
        if held is not None:
            return msgspec.structs.replace(decision, holdout=held.holdout)
        return decision

    def _decide_experiments(
        self,
        flag: Flag,
        user_id: str,
        attributes: Mapping[str, Any],
        forced_variations: Mapping[str, str],
        forced_decisions: Mapping[tuple[str, str | None], str],
        reasons: list[str] | None,
        profile: StickyProfile | None,
        held: FlagDecision | None,
    ) -> FlagDecision | None:
        """The flag's experiments in order (only type ``td`` when ``held``)."""
        by_id = self._by_id
        for experiment_id in flag.experiment_ids:
            experiment = by_id.get(experiment_id)
            if experiment is None or (held is not None and experiment.type != "td"):
                continue
            if forced_decisions:
                forced = self._forced_decision(
                    flag, experiment.key, forced_decisions, user_id, reasons
                )
                if forced is not None:
                    enabled = bool(forced.feature_enabled)
                    holdout = held.holdout if held is not None else None
                    return FlagDecision(experiment, forced, SOURCE_FEATURE_TEST, enabled, holdout)
            local = self._holdouts.local_decision(
                experiment, "experiment rule", user_id, attributes, reasons
            )
            if local is not None:
                return local
            decision = self._experiment_decision(
                experiment, user_id, attributes, forced_variations, reasons, profile, held
            )
            if decision is not None:
                return decision
        return None
