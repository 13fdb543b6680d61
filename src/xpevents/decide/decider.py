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
from typing import Any, Final

import msgspec

from xpevents.decide.bucketing import BUCKETING_ID_ATTRIBUTE, get_bucketing_id
from xpevents.decide.datafile import (
    Experiment,
    Flag,
    ProjectConfig,
    Rollout,
    VariableDef,
    Variation,
)
from xpevents.decide.plan import ExperimentPlan, RolloutRule, cast_variable
from xpevents.decide.profile import StickyProfile, stored_variation

logger = logging.getLogger("xpevents.decisions")

__all__ = [
    "SOURCE_FEATURE_TEST",
    "SOURCE_ROLLOUT",
    "Decider",
    "FlagDecision",
    "cast_variable",
]

SOURCE_FEATURE_TEST: Final = "feature-test"
SOURCE_ROLLOUT: Final = "rollout"

_EMPTY: Mapping[Any, Any] = {}


class FlagDecision(msgspec.Struct, frozen=True):
    """The result of a flag decision.

    ``experiment`` is the experiment or rollout rule that decided (``None`` for a
    flag-level forced decision or no decision); ``source`` is ``"feature-test"`` or
    ``"rollout"`` (also reported when nothing matched, as the official SDK does);
    ``enabled`` is ``variation.feature_enabled is True``-ish (truthy).
    """

    experiment: Experiment | None
    variation: Variation | None
    source: str
    enabled: bool

    @property
    def rule_key(self) -> str | None:
        """The key of the deciding experiment or rule, ``None`` when there is none."""
        return self.experiment.key if self.experiment is not None else None

    @property
    def variation_key(self) -> str | None:
        """The key of the variation, ``None`` when there is none."""
        return self.variation.key if self.variation is not None else None


_NO_ROLLOUT_DECISION: Final = FlagDecision(None, None, SOURCE_ROLLOUT, False)


class Decider:
    """Decisions for one :class:`ProjectConfig`; stateless apart from it and thread-safe."""

    __slots__ = ("_adhoc", "_by_id", "_config", "_plans", "_rollouts")

    def __init__(self, config: ProjectConfig) -> None:
        self._config = config
        self._by_id = config.experiments_by_id
        self._plans: dict[str, ExperimentPlan] = {
            exp_id: ExperimentPlan(exp, config) for exp_id, exp in config.experiments_by_id.items()
        }
        # experiments not in experiments_by_id (rollout rule objects, foreign objects)
        self._adhoc: dict[int, ExperimentPlan] = {}
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
        if check is not None and not check(attributes):
            if reasons is not None:
                reasons.append(
                    f'User "{user_id}" does not meet conditions to be in experiment '
                    f'"{experiment.key}".'
                )
            return None
        attribute_id = attributes.get(BUCKETING_ID_ATTRIBUTE) if attributes else None
        bucketing_id = attribute_id if isinstance(attribute_id, str) else user_id
        variation = plan.bucket(bucketing_id, user_id, reasons)
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

    def _forced_decision(
        self,
        flag: Flag,
        rule_key: str | None,
        forced_decisions: Mapping[tuple[str, str | None], str],
        user_id: str,
        reasons: list[str] | None,
    ) -> Variation | None:
        variation_key = forced_decisions.get((flag.key, rule_key))
        if variation_key is None:
            return None
        for variation in self._config.flag_variations.get(flag.key, ()):
            if variation.key == variation_key:
                if reasons is not None:
                    where = f"flag ({flag.key})" + (f", rule ({rule_key})" if rule_key else "")
                    reasons.append(
                        f"Variation ({variation_key}) is mapped to {where} and user "
                        f"({user_id}) in the forced decision map."
                    )
                return variation
        if reasons is not None:
            where = f"flag ({flag.key})" + (f", rule ({rule_key})" if rule_key else "")
            reasons.append(
                f"Invalid variation is mapped to {where} and user ({user_id}) "
                "in the forced decision map."
            )
        return None

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
            return _NO_ROLLOUT_DECISION
        if forced_decisions:
            forced = self._forced_decision(flag, None, forced_decisions, user_id, reasons)
            if forced is not None:
                return FlagDecision(None, forced, SOURCE_FEATURE_TEST, bool(forced.feature_enabled))

        by_id = self._by_id
        for experiment_id in flag.experiment_ids:
            experiment = by_id.get(experiment_id)
            if experiment is None:
                continue
            if forced_decisions:
                forced = self._forced_decision(
                    flag, experiment.key, forced_decisions, user_id, reasons
                )
                if forced is not None:
                    return FlagDecision(
                        experiment, forced, SOURCE_FEATURE_TEST, bool(forced.feature_enabled)
                    )
            variation = self.get_variation(
                experiment,
                user_id,
                attributes,
                forced_variation_key=forced_variations.get(experiment.key)
                if forced_variations
                else None,
                reasons=reasons,
                profile=profile,
            )
            if variation is not None:
                return FlagDecision(
                    experiment, variation, SOURCE_FEATURE_TEST, bool(variation.feature_enabled)
                )
        return self._decide_rollout(flag, user_id, attributes, forced_decisions, reasons)

    def _decide_rollout(
        self,
        flag: Flag,
        user_id: str,
        attributes: Mapping[str, Any],
        forced_decisions: Mapping[tuple[str, str | None], str],
        reasons: list[str] | None,
    ) -> FlagDecision:
        if not flag.rollout_id:
            return _NO_ROLLOUT_DECISION
        rollout = self._rollouts.get(flag.rollout_id)
        if rollout is None:
            if reasons is not None:
                reasons.append(f"There is no rollout of feature {flag.key}.")
            return _NO_ROLLOUT_DECISION
        targeted, everyone_else = rollout
        bucketing_id = get_bucketing_id(user_id, attributes) if attributes else user_id
        for rule in targeted:
            decision = self._decide_rule(
                rule, flag, user_id, bucketing_id, attributes, forced_decisions, reasons
            )
            if decision is _NO_ROLLOUT_DECISION:
                # the user meets this rule's audiences: no other targeted rule is tried
                if reasons is not None:
                    reasons.append(
                        f'User "{user_id}" not bucketed into a targeting rule {rule.label}. '
                        'Checking "Everyone Else" rule now.'
                    )
                break
            if decision is not None:
                return decision
        decision = self._decide_rule(
            everyone_else, flag, user_id, bucketing_id, attributes, forced_decisions, reasons
        )
        return _NO_ROLLOUT_DECISION if decision is None else decision

    def _decide_rule(
        self,
        rule: RolloutRule,
        flag: Flag,
        user_id: str,
        bucketing_id: str,
        attributes: Mapping[str, Any],
        forced_decisions: Mapping[tuple[str, str | None], str],
        reasons: list[str] | None,
    ) -> FlagDecision | None:
        """One rollout rule's decision.

        ``None`` when the rule's audiences do not admit the user; ``_NO_ROLLOUT_DECISION``
        when they do but the user is bucketed into no variation.
        """
        experiment = rule.experiment
        if forced_decisions:
            forced = self._forced_decision(flag, experiment.key, forced_decisions, user_id, reasons)
            if forced is not None:
                return FlagDecision(
                    experiment, forced, SOURCE_ROLLOUT, bool(forced.feature_enabled)
                )
        check = rule.plan.audience_check
        admitted = check is None or check(attributes)
        if reasons is not None:
            verb = "meets" if admitted else "does not meet"
            reasons.append(
                f'User "{user_id}" {verb} audience conditions for targeting rule {rule.label}.'
            )
        if not admitted:
            return None
        variation = rule.plan.bucket(bucketing_id, user_id, reasons)
        if variation is None:
            return _NO_ROLLOUT_DECISION
        if reasons is not None:
            reasons.append(f'User "{user_id}" bucketed into a targeting rule {rule.label}.')
        return FlagDecision(experiment, variation, SOURCE_ROLLOUT, bool(variation.feature_enabled))

    def variable_value(
        self, flag: Flag, variable_key: str, variation: Variation | None, enabled: bool
    ) -> Any:
        """A flag variable's typed value for a decision.

        The variation's value when the flag is enabled for that variation (and the
        variation sets the variable), else the default; converted by type (boolean,
        integer, double, string, json). Raises ``KeyError`` for an unknown variable.
        """
        variable = flag.variables[variable_key]
        return self._variable(variable, variation, enabled)

    def _variable(self, variable: VariableDef, variation: Variation | None, enabled: bool) -> Any:
        value: Any = variable.default_value
        if enabled and variation is not None:
            values = self._config.variable_values.get(variation.id)
            value = None if values is None else values.get(variable.id, variable.default_value)
        return cast_variable(value, variable.type)

    def variables(self, flag: Flag, decision: FlagDecision) -> dict[str, Any]:
        """Every variable of a flag, typed, for a decision (the ``variables`` of ``decide``)."""
        return {
            key: self._variable(variable, decision.variation, decision.enabled)
            for key, variable in flag.variables.items()
        }
