"""A decision, explained step by step.

The steps are recomputed here from the datafile model with the engine's own pieces
(compiled conditions, :func:`~xpevents.decide.bucketing.bucket_value`), in the order the
official SDK takes them; the verdict printed with them comes from the real engine
(``Client.decide``/``get_variation``), so an explanation can never claim a different
outcome than the client would give.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from xpevents.decide.audiences import compile_condition
from xpevents.decide.bucketing import bucket_value, get_bucketing_id
from xpevents.decide.datafile.model import Experiment, Flag, ProjectConfig, TrafficAllocation

__all__ = ["Step", "explain_experiment", "explain_flag"]

T = TypeVar("T")

_OPERATORS = frozenset({"and", "or", "not"})
_RESULT = {True: "true", False: "false", None: "unknown"}


@dataclass(frozen=True)
class Step:
    """One step of a decision: ``rule`` it belongs to, what was checked, and the answer."""

    rule: str
    check: str
    outcome: str
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        """A plain dict, for ``--json``."""
        return {
            "rule": self.rule,
            "check": self.check,
            "outcome": self.outcome,
            "detail": self.detail,
        }


def explain_flag(
    config: ProjectConfig, flag: Flag, user_id: str, attributes: Mapping[str, Any]
) -> list[Step]:
    """The steps of ``decide(user_id, flag.key)``: experiments first, then rollout rules."""
    steps: list[Step] = []
    for experiment_id in flag.experiment_ids:
        experiment = config.experiments_by_id.get(experiment_id)
        if experiment is None:
            steps.append(Step(experiment_id, "experiment", "missing", "not in the datafile"))
            continue
        found, rule_steps = _walk(config, experiment, user_id, attributes, "experiment")
        steps.extend(rule_steps)
        if found:
            return steps
    rollout = config.rollouts.get(flag.rollout_id)
    rules = rollout.experiments if rollout is not None else ()
    steps.extend(_rollout_steps(config, rules, user_id, attributes))
    return steps


def explain_experiment(
    config: ProjectConfig, experiment: Experiment, user_id: str, attributes: Mapping[str, Any]
) -> list[Step]:
    """The steps of ``activate``/``get_variation`` for one experiment."""
    return _walk(config, experiment, user_id, attributes, "experiment")[1]


def _rollout_steps(
    config: ProjectConfig,
    rules: tuple[Experiment, ...],
    user_id: str,
    attributes: Mapping[str, Any],
) -> Iterator[Step]:
    index = 0
    while index < len(rules):
        rule = rules[index]
        last = index == len(rules) - 1
        label = "everyone else" if last else f"targeting rule {index + 1}"
        audience_steps, admitted = _audience_steps(config, rule, attributes, label)
        yield from audience_steps
        if not admitted:
            index += 1
            continue
        found, bucket_steps = _bucket_steps(rule, user_id, attributes, label)
        yield from bucket_steps
        if found or last:
            return
        # In the audience but outside the rule's traffic: the official SDK skips the
        # remaining targeting rules and goes straight to "everyone else".
        yield Step(rule.key, label, "skip", 'not in traffic; jumping to "everyone else"')
        index = len(rules) - 1


def _walk(
    config: ProjectConfig,
    experiment: Experiment,
    user_id: str,
    attributes: Mapping[str, Any],
    label: str,
) -> tuple[bool, list[Step]]:
    steps: list[Step] = []
    if not experiment.is_running:
        steps.append(Step(experiment.key, "status", "skip", f"status is {experiment.status!r}"))
        return False, steps
    forced = experiment.forced_variations.get(user_id)
    if forced is not None and forced in experiment.variations_by_key:
        steps.append(Step(experiment.key, "whitelist", forced, "forcedVariations names the user"))
        return True, steps
    audience_steps, admitted = _audience_steps(config, experiment, attributes, label)
    steps.extend(audience_steps)
    if not admitted:
        return False, steps
    group_steps, in_group = _group_steps(config, experiment, user_id, attributes)
    steps.extend(group_steps)
    if not in_group:
        return False, steps
    found, bucket_steps = _bucket_steps(experiment, user_id, attributes, experiment.key)
    steps.extend(bucket_steps)
    return found, steps


def _audience_steps(
    config: ProjectConfig, experiment: Experiment, attributes: Mapping[str, Any], label: str
) -> tuple[list[Step], bool]:
    if experiment.audience_check is None:
        return [Step(experiment.key, "audiences", "true", f"{label}: everyone")], True
    steps: list[Step] = []
    for audience_id in _leaves(experiment.audience_conditions, str):
        if audience_id in _OPERATORS:
            continue
        audience = config.audiences.get(audience_id)
        if audience is None:
            steps.append(Step(experiment.key, f"audience {audience_id}", "unknown", "not found"))
            continue
        result = audience.predicate(attributes)
        steps.append(Step(experiment.key, f"audience {audience.name!r}", _RESULT[result]))
        steps.extend(_condition_steps(experiment.key, audience.conditions, attributes))
    admitted = experiment.audience_check(attributes)
    tree = experiment.audience_conditions
    steps.append(Step(experiment.key, "audiences", _RESULT[admitted], f"{label}: {tree}"))
    return steps, admitted


def _condition_steps(rule: str, tree: Any, attributes: Mapping[str, Any]) -> Iterator[Step]:
    for condition in _leaves(tree, dict):
        name = condition.get("name")
        match = condition.get("match") or "exact"
        expected = condition.get("value")
        actual = attributes.get(name) if isinstance(name, str) else None
        result = compile_condition(condition)(attributes)
        detail = f"attribute value {actual!r} ({type(actual).__name__})"
        if actual is None and match != "exists":
            detail = "attribute missing"
        yield Step(rule, f"  {name} {match} {expected!r}", _RESULT[result], detail)


def _leaves(tree: Any, kind: type[T]) -> Iterator[T]:
    if isinstance(tree, list | tuple):
        for item in tree:
            yield from _leaves(item, kind)
    elif isinstance(tree, kind):
        yield tree


def _group_steps(
    config: ProjectConfig, experiment: Experiment, user_id: str, attributes: Mapping[str, Any]
) -> tuple[list[Step], bool]:
    group = config.groups.get(experiment.group_id or "")
    if group is None or group.policy != "random":
        return [], True
    bucketing_id = get_bucketing_id(user_id, attributes)
    value = bucket_value(bucketing_id + group.id)
    chosen = _range(group.traffic_allocation, value)
    picked = config.experiments_by_id.get(chosen.entity_id) if chosen else None
    name = picked.key if picked is not None else "no experiment"
    inside = picked is not None and picked.id == experiment.id
    detail = f"group {group.id}: bucket {value} -> {name}"
    return [Step(experiment.key, "group", "true" if inside else "false", detail)], inside


def _bucket_steps(
    experiment: Experiment, user_id: str, attributes: Mapping[str, Any], label: str
) -> tuple[bool, list[Step]]:
    bucketing_id = get_bucketing_id(user_id, attributes)
    value = bucket_value(bucketing_id + experiment.id)
    chosen = _range(experiment.traffic_allocation, value)
    variation = experiment.variations_by_id.get(chosen.entity_id) if chosen else None
    if variation is None:
        detail = f"{label}: bucket {value} of 10000 is in no variation's range"
        return False, [Step(experiment.key, "traffic", "none", detail)]
    assert chosen is not None
    detail = f"{label}: bucket {value} < {chosen.end_of_range} (bucketing id {bucketing_id!r})"
    return True, [Step(experiment.key, "traffic", variation.key, detail)]


def _range(allocation: tuple[TrafficAllocation, ...], value: int) -> TrafficAllocation | None:
    for entry in allocation:
        if value < entry.end_of_range:
            return entry
    return None
