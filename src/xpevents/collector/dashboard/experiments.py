"""Per experiment: impressions per variation, the split, SRM, conversions and revenue.

Computed from the stored events (SQL over the ``events`` table) on request:

* impressions: stored impression events grouped by the first decision's experiment and
  variation (decisions with no variation are left out of the split);
* conversions and revenue per variation: conversion events of the visitors who had an
  impression in that variation (a visitor seen in two variations counts in both);
* keys: ``metadata.rule_key`` / ``metadata.variation_key`` of the impressions, else the
  datafile's keys when the collector was given one, else the ids;
* SRM: :func:`~xpevents.collector.dashboard.srm.srm_check` against the datafile's traffic
  allocation (only when the datafile is known).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Final

from xpevents.collector.dashboard.srm import srm_check
from xpevents.collector.stats import NULL_VARIATION
from xpevents.collector.store import EventStore
from xpevents.decide.datafile import Experiment, ProjectConfig
from xpevents.serving.schema import ACTIVATE_EVENT_KEY

__all__ = ["KeyNames", "allocation_weights", "experiment_summaries"]

_IMPRESSIONS: Final = """
SELECT experiment_id, variation_id,
       max(json_extract(metadata, '$.rule_key')), max(json_extract(metadata, '$.variation_key')),
       count(*)
FROM events WHERE key = ? AND experiment_id IS NOT NULL
GROUP BY experiment_id, variation_id
"""
_CONVERSIONS: Final = """
WITH seen AS (
    SELECT DISTINCT visitor_id, experiment_id, variation_id FROM events
    WHERE key = ? AND experiment_id IS NOT NULL AND variation_id IS NOT NULL
)
SELECT seen.experiment_id, seen.variation_id, count(c.id), sum(c.revenue), sum(c.value)
FROM seen JOIN events AS c ON c.visitor_id = seen.visitor_id AND c.key != ?
GROUP BY seen.experiment_id, seen.variation_id
"""


def allocation_weights(experiment: Experiment) -> dict[str, int]:
    """Bucket range widths (out of 10000) per variation id of the experiment."""
    weights: dict[str, int] = defaultdict(int)
    start = 0
    for part in experiment.traffic_allocation:
        if part.entity_id in experiment.variations_by_id:
            weights[part.entity_id] += max(0, part.end_of_range - start)
        start = max(start, part.end_of_range)
    return dict(weights)


def _variation_key(experiment: Experiment | None, variation_id: str | None, key: str | None) -> str:
    if key:
        return key
    if variation_id is None:
        return "(none)"
    if experiment is not None and variation_id in experiment.variations_by_id:
        return experiment.variations_by_id[variation_id].key
    return variation_id


def _new_summary(exp_id: str, experiment: Experiment | None) -> dict[str, Any]:
    return {
        "experiment_id": exp_id,
        "key": experiment.key if experiment is not None else exp_id,
        "impressions": 0,
        "variations": {},
        "srm": None,
    }


def _variation(summary: dict[str, Any], variation_id: str, key: str) -> dict[str, Any]:
    variations: dict[str, Any] = summary["variations"]
    if variation_id not in variations:
        variations[variation_id] = {
            "key": key,
            "impressions": 0,
            "share": 0.0,
            "expected_share": None,
            "conversions": 0,
            "revenue": 0,
            "value": 0.0,
        }
    return variations[variation_id]  # type: ignore[no-any-return]


def experiment_summaries(store: EventStore, config: ProjectConfig | None) -> list[dict[str, Any]]:
    """One JSON-ready summary per experiment seen in impressions, sorted by key."""
    by_id = {} if config is None else config.experiments_by_id
    summaries: dict[str, dict[str, Any]] = {}
    for exp_id, var_id, rule_key, var_key, count in store.query(
        _IMPRESSIONS, (ACTIVATE_EVENT_KEY,)
    ):
        experiment = by_id.get(exp_id)
        summary = summaries.setdefault(exp_id, _new_summary(exp_id, experiment))
        if rule_key and experiment is None:
            summary["key"] = rule_key
        if var_id is None:
            summary["no_variation"] = summary.get("no_variation", 0) + count
            continue
        _variation(summary, var_id, _variation_key(experiment, var_id, var_key))["impressions"] = (
            count
        )
        summary["impressions"] += count
    for exp_id, var_id, conversions, revenue, value in store.query(
        _CONVERSIONS, (ACTIVATE_EVENT_KEY, ACTIVATE_EVENT_KEY)
    ):
        if exp_id in summaries:
            row = _variation(summaries[exp_id], var_id, _variation_key(None, var_id, None))
            row.update(conversions=conversions, revenue=revenue or 0, value=value or 0.0)
    for summary in summaries.values():
        _finish(summary, by_id.get(summary["experiment_id"]))
    return sorted(summaries.values(), key=lambda s: str(s["key"]))


def _finish(summary: dict[str, Any], experiment: Experiment | None) -> None:
    variations: dict[str, Any] = summary["variations"]
    total = summary["impressions"]
    for row in variations.values():
        row["share"] = round(row["impressions"] / total, 4) if total else 0.0
    if experiment is None:
        return
    weights = allocation_weights(experiment)
    for var_id in weights:
        var = experiment.variations_by_id[var_id]
        _variation(summary, var_id, var.key)
    result = srm_check({v: r["impressions"] for v, r in variations.items()}, weights)
    if result is not None:
        summary["srm"] = result.to_dict()
        for var_id, share in result.expected.items():
            variations[var_id]["expected_share"] = round(share, 4)


class KeyNames:
    """Experiment and variation keys for ids, for ``/stats``: cheap, cached per id pair.

    The datafile's keys when it knows the ids, else the ``metadata`` keys of one stored
    impression (one indexed-free lookup per new pair, then cached), else the ids.
    """

    _SQL: Final = (
        "SELECT json_extract(metadata, '$.rule_key'), json_extract(metadata, '$.variation_key') "
        "FROM events WHERE key = ? AND experiment_id = ? AND variation_id = ? "
        "AND metadata IS NOT NULL LIMIT 1"
    )

    def __init__(self, store: EventStore, config: ProjectConfig | None) -> None:
        self._store = store
        self._config = config
        self._cache: dict[tuple[str, str], tuple[str, str]] = {}

    def names(self, exp_id: str, var_id: str) -> tuple[str, str]:
        """``(experiment key, variation key)`` for the ids (the ids when unknown)."""
        cached = self._cache.get((exp_id, var_id))
        if cached is not None:
            return cached
        experiment = None if self._config is None else self._config.experiments_by_id.get(exp_id)
        if experiment is not None:
            variation = experiment.variations_by_id.get(var_id)
            names = (experiment.key, variation.key if variation is not None else var_id)
        elif var_id == NULL_VARIATION:
            names = (exp_id, var_id)
        else:
            rows = self._store.query(self._SQL, (ACTIVATE_EVENT_KEY, exp_id, var_id))
            names = (rows[0][0] or exp_id, rows[0][1] or var_id) if rows else (exp_id, var_id)
        self._cache[(exp_id, var_id)] = names
        return names

    def impressions_by_key(self, impressions: dict[str, Any]) -> dict[str, dict[str, int]]:
        """``/stats`` ``impressions`` (ids) re-keyed ``{experiment key: {variation key: n}}``."""
        out: dict[str, dict[str, int]] = {}
        for exp_id, by_variation in impressions.items():
            for var_id, count in by_variation.items():
                exp_key, var_key = self.names(exp_id, var_id)
                row = out.setdefault(exp_key, {})
                row[var_key] = row.get(var_key, 0) + count
        return out
