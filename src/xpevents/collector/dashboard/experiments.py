"""Per experiment: impressions per variation, the split, SRM, conversions and revenue.

:class:`ExperimentTally` reads the stored events incrementally (only the rows added since
its last look, by ``id``), so a page polling it costs in proportion to new events:

* impressions: stored impression events counted by the first decision's experiment and
  variation (decisions with no variation are counted apart, out of the split);
* conversions, revenue and value per variation: conversion events of a visitor stored
  after that visitor's impression in the variation (a visitor seen in two variations
  counts in both; a conversion stored before any impression of its visitor is not
  attributed);
* keys: ``metadata.rule_key`` / ``metadata.variation_key`` of the impressions, else the
  datafile's keys when the collector was given one, else the ids;
* a page opened on a big store catches up :data:`CHUNK` rows per poll;
* SRM: :func:`~xpevents.collector.dashboard.srm.srm_check` against the datafile's traffic
  allocation (only when the datafile is known).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Final

from xpevents.collector.dashboard.srm import srm_check
from xpevents.collector.stats import NULL_VARIATION
from xpevents.collector.store import EventStore
from xpevents.decide.datafile import Experiment, ProjectConfig
from xpevents.serving.schema import ACTIVATE_EVENT_KEY

__all__ = ["ExperimentTally", "KeyNames", "allocation_weights"]

_NEW_ROWS: Final = """
SELECT id, key, visitor_id, experiment_id, variation_id,
       json_extract(metadata, '$.rule_key'), json_extract(metadata, '$.variation_key'),
       revenue, value
FROM events WHERE id > ? ORDER BY id LIMIT ?
"""
CHUNK: Final = 20_000
"""Rows read per update at most: a page opened on a big store catches up over a few polls
instead of holding the event loop for long."""
_MAX_ID: Final = "SELECT max(id) FROM events"

Pair = tuple[str, str]


def allocation_weights(experiment: Experiment) -> dict[str, int]:
    """Bucket range widths (out of 10000) per variation id of the experiment."""
    weights: dict[str, int] = defaultdict(int)
    start = 0
    for part in experiment.traffic_allocation:
        if part.entity_id in experiment.variations_by_id:
            weights[part.entity_id] += max(0, part.end_of_range - start)
        start = max(start, part.end_of_range)
    return dict(weights)


class ExperimentTally:
    """Running per-experiment counts over an :class:`EventStore` (see the module doc)."""

    def __init__(self, store: EventStore, config: ProjectConfig | None) -> None:
        self._store = store
        self._config = config
        self.reset()

    def reset(self) -> None:
        """Forget everything (the store was cleared)."""
        self._last_id = 0
        self._visitors: dict[str, set[Pair]] = {}
        self._impressions: Counter[Pair] = Counter()
        self._no_variation: Counter[str] = Counter()
        self._keys: dict[Pair, tuple[str | None, str | None]] = {}
        self._conversions: defaultdict[Pair, list[float]] = defaultdict(lambda: [0, 0, 0.0])

    def update(self) -> None:
        """Read up to :data:`CHUNK` events stored since the last call."""
        top = self._store.query(_MAX_ID)[0][0] or 0
        if top < self._last_id:
            self.reset()
        for row in self._store.query(_NEW_ROWS, (self._last_id, CHUNK)):
            self._add(*row)

    def _add(
        self,
        row_id: int,
        key: str,
        visitor: str,
        exp_id: str | None,
        var_id: str | None,
        rule_key: str | None,
        var_key: str | None,
        revenue: int | None,
        value: float | None,
    ) -> None:
        self._last_id = row_id
        if key != ACTIVATE_EVENT_KEY:
            for pair in self._visitors.get(visitor, ()):
                totals = self._conversions[pair]
                totals[0] += 1
                totals[1] += revenue or 0
                totals[2] += value or 0.0
        elif exp_id is not None and var_id is None:
            self._no_variation[exp_id] += 1
        elif exp_id is not None and var_id is not None:
            pair = (exp_id, var_id)
            self._impressions[pair] += 1
            self._keys.setdefault(pair, (rule_key, var_key))
            self._visitors.setdefault(visitor, set()).add(pair)

    def summaries(self) -> list[dict[str, Any]]:
        """One JSON-ready summary per experiment seen in impressions, sorted by key."""
        self.update()
        by_id = {} if self._config is None else self._config.experiments_by_id
        out: dict[str, dict[str, Any]] = {}
        for exp_id in {e for e, _ in self._impressions} | set(self._no_variation):
            out[exp_id] = _new_summary(exp_id, by_id.get(exp_id), self._no_variation[exp_id])
        for (exp_id, var_id), count in self._impressions.items():
            experiment = by_id.get(exp_id)
            rule_key, var_key = self._keys[(exp_id, var_id)]
            summary = out[exp_id]
            if rule_key and experiment is None:
                summary["key"] = rule_key
            row = _variation(summary, var_id, _variation_key(experiment, var_id, var_key))
            row["impressions"] = count
            conversions, revenue, value = self._conversions.get((exp_id, var_id), (0, 0, 0.0))
            row.update(conversions=int(conversions), revenue=int(revenue), value=float(value))
            summary["impressions"] += count
        for summary in out.values():
            _finish(summary, by_id.get(summary["experiment_id"]))
        return sorted(out.values(), key=lambda s: str(s["key"]))


def _variation_key(experiment: Experiment | None, variation_id: str, key: str | None) -> str:
    if key:
        return key
    if experiment is not None and variation_id in experiment.variations_by_id:
        return experiment.variations_by_id[variation_id].key
    return variation_id


def _new_summary(exp_id: str, experiment: Experiment | None, no_variation: int) -> dict[str, Any]:
    return {
        "experiment_id": exp_id,
        "key": experiment.key if experiment is not None else exp_id,
        "impressions": 0,
        "no_variation": no_variation,
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


def _finish(summary: dict[str, Any], experiment: Experiment | None) -> None:
    variations: dict[str, Any] = summary["variations"]
    total = summary["impressions"]
    for row in variations.values():
        row["share"] = round(row["impressions"] / total, 4) if total else 0.0
    if experiment is None:
        summary["variations"] = dict(sorted(variations.items(), key=lambda item: item[1]["key"]))
        return
    weights = allocation_weights(experiment)
    for var_id in weights:
        _variation(summary, var_id, experiment.variations_by_id[var_id].key)
    order = {v.id: i for i, v in enumerate(experiment.variations)}
    summary["variations"] = variations = dict(
        sorted(variations.items(), key=lambda item: order.get(item[0], len(order)))
    )
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
