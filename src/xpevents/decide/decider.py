"""Experiment and flag decisions, with the answers of optimizely-sdk 5.7.0.

:class:`Decider` is built once per :class:`~xpevents.decide.datafile.ProjectConfig`; it
precomputes, per experiment, everything a decision needs (whitelist resolved to
variations, compiled audience check, compiled traffic allocation, group data), so a
decision is a few dictionary lookups, one murmur3 hash and one binary search.

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
Holdouts and CMAB experiments are not supported (ignored).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from xpevents.decide.audiences import AudienceCheck
from xpevents.decide.bucketing import (
    BUCKETING_ID_ATTRIBUTE,
    HASH_SEED,
    MAX_TRAFFIC_VALUE,
    Allocation,
    get_bucketing_id,
)
from xpevents.decide.datafile import Experiment, Flag, ProjectConfig, VariableDef, Variation

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


class _Plan:
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
            (t.end_of_range, by_id.get(t.entity_id) if t.entity_id else None)
            for t in experiment.traffic_allocation
        )
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


def cast_variable(value: str | None, variable_type: str) -> Any:
    """Convert a variable's value string to its type, as the official SDK does.

    ``boolean``: ``value == "true"``; ``integer``: ``int(value)``; ``double``:
    ``float(value)``; ``json``: ``json.loads(value)``; anything else: the string.
    A value that does not convert gives ``None``.
    """
    try:
        if variable_type == "boolean":
            return value == "true"
        if variable_type == "integer":
            return int(value)  # type: ignore[arg-type]
        if variable_type == "double":
            return float(value)  # type: ignore[arg-type]
        if variable_type == "json":
            return json.loads(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        logger.error("Unable to cast value %r to %s. Returning None.", value, variable_type)
        return None
    return value


class Decider:
    """Decisions for one :class:`ProjectConfig`; stateless apart from it and thread-safe."""

    __slots__ = ("_adhoc", "_by_id", "_config", "_hash", "_plans", "_rollout_rules")

    def __init__(self, config: ProjectConfig) -> None:
        import mmh3

        self._config = config
        self._hash = mmh3.hash
        self._by_id = config.experiments_by_id
        self._plans: dict[str, _Plan] = {
            exp_id: _Plan(exp, config) for exp_id, exp in config.experiments_by_id.items()
        }
        # experiments not in experiments_by_id (rollout rule objects, foreign objects)
        self._adhoc: dict[int, _Plan] = {}
        self._rollout_rules: dict[str, tuple[Experiment, ...]] = {}
        for rollout_id, rollout in config.rollouts.items():
            unique: dict[str, Experiment] = {}
            for rule in rollout.experiments:
                unique[rule.id] = rule  # same id: first position, last definition
            self._rollout_rules[rollout_id] = tuple(unique.values())

    @property
    def config(self) -> ProjectConfig:
        """The config this decider answers for."""
        return self._config

    def _plan(self, experiment: Experiment) -> _Plan:
        plan = self._plans.get(experiment.id)
        if plan is not None and plan.experiment is experiment:
            return plan
        plan = self._adhoc.get(id(experiment))
        if plan is None or plan.experiment is not experiment:
            plan = _Plan(experiment, self._config)
            self._adhoc[id(experiment)] = plan
        return plan

    def _bucket(
        self, plan: _Plan, bucketing_id: str, user_id: str, reasons: list[str] | None
    ) -> Variation | None:
        if not plan.can_bucket:
            return None
        if plan.in_group:
            allocation = plan.group_allocation
            if allocation is None:
                return None
            bucket = (
                self._hash(bucketing_id + plan.group_suffix, HASH_SEED, signed=False)
                * MAX_TRAFFIC_VALUE
            ) >> 32
            hit = allocation.find(bucket)
            if not hit:
                if reasons is not None:
                    if hit is None:
                        reasons.append(f'User "{user_id}" is in no experiment.')
                    else:
                        reasons.append(
                            f'User "{user_id}" is not in experiment "{plan.experiment.key}" '
                            f"of group {plan.group_suffix}."
                        )
                return None
            if reasons is not None:
                reasons.append(
                    f'User "{user_id}" is in experiment {plan.experiment.key} '
                    f"of group {plan.group_suffix}."
                )
        bucket = (
            self._hash(bucketing_id + plan.bucket_suffix, HASH_SEED, signed=False)
            * MAX_TRAFFIC_VALUE
        ) >> 32
        variation = plan.traffic.find(bucket)
        if variation is None and reasons is not None:
            reasons.append("Bucketed into an empty traffic range. Returning nil.")
        return variation

    def get_variation(
        self,
        experiment: Experiment,
        user_id: str,
        attributes: Mapping[str, Any],
        *,
        forced_variation_key: str | None = None,
        reasons: list[str] | None = None,
    ) -> Variation | None:
        """The variation of ``experiment`` for a user, or ``None``.

        ``forced_variation_key`` is the variation set with the client's
        ``set_forced_variation`` (ignored when it is not a variation of the
        experiment). Human-readable reasons are appended to ``reasons`` when given.
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
        if forced_variation_key is not None:
            forced = plan.variations_by_key.get(forced_variation_key)
            if forced is not None:
                if reasons is not None:
                    reasons.append(
                        f'Variation "{forced.key}" is mapped to experiment "{experiment.key}" '
                        f'and user "{user_id}" in the forced variation map'
                    )
                return forced
        if plan.whitelist:
            whitelisted = plan.whitelist.get(user_id)
            if whitelisted is not None:
                if reasons is not None:
                    reasons.append(f'User "{user_id}" is forced in variation "{whitelisted.key}".')
                return whitelisted
        check = plan.audience_check
        if check is not None and not check(attributes):
            if reasons is not None:
                reasons.append(
                    f'User "{user_id}" does not meet conditions to be in experiment '
                    f'"{experiment.key}".'
                )
            return None
        bucketing_id = attributes.get(BUCKETING_ID_ATTRIBUTE) if attributes else None
        if not isinstance(bucketing_id, str):
            bucketing_id = user_id
        variation = self._bucket(plan, bucketing_id, user_id, reasons)
        if reasons is not None:
            if variation is not None:
                reasons.append(
                    f'User "{user_id}" is in variation "{variation.key}" of experiment '
                    f"{experiment.key}."
                )
            else:
                reasons.append(f'User "{user_id}" is in no variation.')
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
    ) -> FlagDecision:
        """Decide a flag for a user, as the official ``decide`` does.

        ``forced_variations`` maps experiment keys to variation keys (the client's
        ``set_forced_variation``); ``forced_decisions`` maps ``(flag_key, rule_key)``
        (``rule_key`` ``None`` for the whole flag) to a variation key.
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
        rules = self._rollout_rules.get(flag.rollout_id)
        if not rules:
            if reasons is not None:
                reasons.append(f"There is no rollout of feature {flag.key}.")
            return _NO_ROLLOUT_DECISION
        bucketing_id = get_bucketing_id(user_id, attributes) if attributes else user_id
        last = len(rules) - 1
        index = 0
        while index <= last:
            rule = rules[index]
            if forced_decisions:
                forced = self._forced_decision(flag, rule.key, forced_decisions, user_id, reasons)
                if forced is not None:
                    return FlagDecision(rule, forced, SOURCE_ROLLOUT, bool(forced.feature_enabled))
            # the official SDK evaluates the rule as indexed by id (the last definition)
            target = self._by_id.get(rule.id, rule)
            plan = self._plan(target)
            label = "Everyone Else" if index == last else str(index + 1)
            check = plan.audience_check
            if check is None or check(attributes):
                if reasons is not None:
                    reasons.append(
                        f'User "{user_id}" meets audience conditions for targeting rule {label}.'
                    )
                variation = self._bucket(plan, bucketing_id, user_id, reasons)
                if variation is not None:
                    if reasons is not None:
                        reasons.append(f'User "{user_id}" bucketed into a targeting rule {label}.')
                    return FlagDecision(
                        rule, variation, SOURCE_ROLLOUT, bool(variation.feature_enabled)
                    )
                if index != last:
                    if reasons is not None:
                        reasons.append(
                            f'User "{user_id}" not bucketed into a targeting rule {label}. '
                            'Checking "Everyone Else" rule now.'
                        )
                    index = last
                    continue
            elif reasons is not None:
                reasons.append(
                    f'User "{user_id}" does not meet audience conditions for targeting rule '
                    f"{label}."
                )
            index += 1
        return _NO_ROLLOUT_DECISION

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
        value: str | None = variable.default_value
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
