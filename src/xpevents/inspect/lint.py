"""Datafile problems that load without an error but surprise people.

:func:`lint` returns :class:`Finding` objects: the loader's own warnings, traffic
allocations past 10000 or with ranges that can never be reached, experiments nobody
can reach (paused, no traffic, a zero slice of their group), audiences no rule uses,
attributes no audience reads, and events attached to no experiment.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from xpevents.decide.bucketing import MAX_TRAFFIC_VALUE
from xpevents.decide.datafile.model import Experiment, ProjectConfig, TrafficAllocation

__all__ = ["Finding", "lint"]


@dataclass(frozen=True)
class Finding:
    """One problem: ``level`` is ``warning`` or ``info``; ``where`` names the entity."""

    level: str
    where: str
    message: str

    def as_dict(self) -> dict[str, str]:
        """A plain dict, for ``--json``."""
        return {"level": self.level, "where": self.where, "message": self.message}


def lint(config: ProjectConfig) -> list[Finding]:
    """Every finding for ``config``, warnings first."""
    findings = [Finding("warning", "datafile", w) for w in config.warnings]
    if not config.usable:
        findings.append(
            Finding("warning", "datafile", "not usable: the client decides nothing with it")
        )
    rules = _all_rules(config)
    for rule in rules:
        findings.extend(_traffic(f"experiment {rule.key!r}", rule.traffic_allocation))
        findings.extend(_reach(config, rule))
    for group in config.groups.values():
        findings.extend(_traffic(f"group {group.id!r}", group.traffic_allocation))
    findings.extend(_unused_audiences(config, rules))
    findings.extend(_unused_attributes(config))
    for event in config.events.values():
        if not event.experiment_ids:
            findings.append(
                Finding("info", f"event {event.key!r}", "attached to no experiment (flags only)")
            )
    findings.sort(key=lambda f: f.level != "warning")
    return findings


def _all_rules(config: ProjectConfig) -> list[Experiment]:
    seen: dict[str, Experiment] = {e.id: e for e in config.experiments.values()}
    for rollout in config.rollouts.values():
        for rule in rollout.experiments:
            seen.setdefault(rule.id, rule)
    return list(seen.values())


def _traffic(where: str, allocation: tuple[TrafficAllocation, ...]) -> Iterator[Finding]:
    highest = 0
    for index, entry in enumerate(allocation):
        if entry.end_of_range > MAX_TRAFFIC_VALUE:
            yield Finding(
                "warning",
                where,
                f"trafficAllocation[{index}] ends at {entry.end_of_range}, past "
                f"{MAX_TRAFFIC_VALUE}: buckets stop at {MAX_TRAFFIC_VALUE - 1}",
            )
        if entry.end_of_range <= highest and entry.entity_id:
            yield Finding(
                "warning",
                where,
                f"trafficAllocation[{index}] ({entry.entity_id!r}, ends at "
                f"{entry.end_of_range}) can never be reached: an earlier range ends at "
                f"{highest}",
            )
        highest = max(highest, entry.end_of_range)


def _share(allocation: tuple[TrafficAllocation, ...], entity_ids: Iterable[str]) -> int:
    wanted = set(entity_ids)
    start = 0
    total = 0
    for entry in allocation:
        end = min(entry.end_of_range, MAX_TRAFFIC_VALUE)
        if end > start and entry.entity_id in wanted:
            total += end - start
        start = max(start, end)
    return total


def _reach(config: ProjectConfig, rule: Experiment) -> Iterator[Finding]:
    where = f"experiment {rule.key!r}"
    if not rule.is_running:
        yield Finding("info", where, f"status {rule.status!r}: nobody is bucketed")
        return
    if _share(rule.traffic_allocation, rule.variations_by_id) == 0:
        yield Finding("warning", where, "running with 0% traffic: nobody can reach it")
    group = config.groups.get(rule.group_id or "")
    in_random_group = group is not None and group.policy == "random"
    if in_random_group and group and _share(group.traffic_allocation, [rule.id]) == 0:
        yield Finding("warning", where, f"its group {group.id!r} gives it no traffic: unreachable")


def _audience_ids(tree: Any) -> Iterator[str]:
    if isinstance(tree, list | tuple):
        for item in tree:
            yield from _audience_ids(item)
    elif isinstance(tree, str) and tree not in ("and", "or", "not"):
        yield tree


def _unused_audiences(config: ProjectConfig, rules: list[Experiment]) -> Iterator[Finding]:
    used = {a for rule in rules for a in _audience_ids(rule.audience_conditions)}
    used.update(a for rule in rules for a in rule.audience_ids)
    for audience in config.audiences.values():
        if audience.id not in used and audience.id != "$opt_dummy_audience":
            yield Finding(
                "info", f"audience {audience.name!r}", f"id {audience.id} is used by no rule"
            )


def _condition_names(tree: Any) -> Iterator[str]:
    if isinstance(tree, list | tuple):
        for item in tree:
            yield from _condition_names(item)
    elif isinstance(tree, dict) and isinstance(tree.get("name"), str):
        yield tree["name"]


def _unused_attributes(config: ProjectConfig) -> Iterator[Finding]:
    read = {n for a in config.audiences.values() for n in _condition_names(a.conditions)}
    for attribute in config.attributes.values():
        if attribute.key not in read:
            yield Finding(
                "info", f"attribute {attribute.key!r}", "declared but read by no audience"
            )
