"""Rich tables for ``xpevents datafile show``, ``lint`` and ``decide``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.table import Table

from xpevents.decide.datafile.model import Experiment, ProjectConfig
from xpevents.inspect.explain import Step
from xpevents.inspect.lint import Finding

__all__ = ["datafile_tables", "findings_table", "overview", "steps_table"]


def _split(experiment: Experiment) -> str:
    start = 0
    parts: list[str] = []
    for entry in experiment.traffic_allocation:
        variation = experiment.variations_by_id.get(entry.entity_id)
        width = max(0, min(entry.end_of_range, 10000) - start)
        start = max(start, entry.end_of_range)
        if width:
            name = variation.key if variation is not None else "(none)"
            parts.append(f"{name} {width / 100:g}%")
    return ", ".join(parts) or "no traffic"


def overview(config: ProjectConfig) -> dict[str, Any]:
    """The datafile as plain data (what ``show --json`` prints)."""
    return {
        "revision": config.revision,
        "project_id": config.project_id,
        "account_id": config.account_id,
        "sdk_key": config.sdk_key,
        "environment_key": config.environment_key,
        "region": config.region,
        "usable": config.usable,
        "experiments": [
            {
                "key": e.key,
                "id": e.id,
                "status": e.status,
                "variations": [v.key for v in e.variations],
                "traffic": _split(e),
                "audiences": e.audience_conditions,
                "group": e.group_id,
            }
            for e in config.experiments_by_id.values()
        ],
        "flags": [
            {
                "key": f.key,
                "experiments": [
                    config.experiments_by_id[i].key
                    for i in f.experiment_ids
                    if i in config.experiments_by_id
                ],
                "rollout_rules": len(config.rollouts[f.rollout_id].experiments)
                if f.rollout_id in config.rollouts
                else 0,
                "variables": {k: v.type for k, v in f.variables.items()},
            }
            for f in config.flags.values()
        ],
        "audiences": {a.id: a.name for a in config.audiences.values()},
        "attributes": sorted(config.attributes),
        "events": sorted(config.events),
    }


def _table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    return table


def datafile_tables(config: ProjectConfig) -> list[Table]:
    """Experiments, flags, audiences, attributes and events, one table each."""
    data = overview(config)
    return [
        _table(
            f"experiments (revision {config.revision})",
            ("key", "status", "traffic", "audiences", "group"),
            (
                (
                    e["key"],
                    e["status"],
                    e["traffic"],
                    e["audiences"] or "everyone",
                    e["group"] or "",
                )
                for e in data["experiments"]
            ),
        ),
        _table(
            "flags",
            ("key", "experiments", "rollout rules", "variables"),
            (
                (f["key"], ", ".join(f["experiments"]), f["rollout_rules"], f["variables"] or "")
                for f in data["flags"]
            ),
        ),
        _table("audiences", ("id", "name"), data["audiences"].items()),
        _table("attributes", ("key",), ((a,) for a in data["attributes"])),
        _table("events", ("key",), ((e,) for e in data["events"])),
    ]


def findings_table(findings: list[Finding]) -> Table:
    """``lint``'s findings."""
    return _table(
        f"{len(findings)} finding(s)",
        ("level", "where", "message"),
        ((f.level, f.where, f.message) for f in findings),
    )


def steps_table(title: str, steps: list[Step]) -> Table:
    """``decide --explain``'s steps."""
    return _table(
        title,
        ("rule", "check", "outcome", "detail"),
        ((s.rule, s.check, s.outcome, s.detail) for s in steps),
    )
