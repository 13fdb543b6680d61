"""Filters of ``GET /events`` and of the dashboard's table, checked and turned into SQL.

Parameters (every one optional; any other name is a ``400`` naming it):

* ``limit`` (default 1000), ``offset`` (default 0): integers >= 0;
* ``visitor``: exact ``visitor_id``;
* ``key``: exact event key (``campaign_activated`` for impressions);
* ``experiment``: experiment id, rule key (``metadata.rule_key``) or, when the collector
  knows the datafile, experiment key;
* ``type``: ``impression`` or ``conversion``;
* ``status``: ``accepted``, ``duplicate``, ``rejected`` or ``fault``. Stored events were
  all accepted; the other outcomes are requests, listed by the dashboard's feed;
* ``after``: only events whose ``id`` is greater (live polling);
* ``order``: ``asc`` (arrival order, the default of ``GET /events``) or ``desc``;
* ``raw``: ``1``/``true``: each event's ``visitor`` as the JSON text received.

``limit`` is at most 100000, ``offset`` and ``after`` at most 2**62.

Values are bound as SQL parameters, never pasted into the query text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

from xpevents._internal.names import unknown
from xpevents.decide.datafile import ProjectConfig
from xpevents.serving.schema import ACTIVATE_EVENT_KEY

__all__ = ["EVENT_PARAMS", "STATUSES", "EventQuery", "QueryError", "parse_query"]

STATUSES: Final = ("accepted", "duplicate", "rejected", "fault")
"""Request outcomes, also the chart's series."""

TYPES: Final = ("impression", "conversion")

EVENT_PARAMS: Final = (
    "limit",
    "offset",
    "visitor",
    "key",
    "experiment",
    "type",
    "status",
    "after",
    "order",
    "raw",
)
"""Every query parameter ``GET /events`` accepts."""


class QueryError(ValueError):
    """A query parameter that is unknown or has a bad value (answered ``400``)."""


class EventQuery(msgspec.Struct, kw_only=True, frozen=True):
    """Checked filters of an events query (see the module docstring)."""

    limit: int = 1000
    offset: int = 0
    visitor: str | None = None
    key: str | None = None
    experiment: str | None = None
    type: str | None = None
    status: str | None = None
    after: int = 0
    order: str = "asc"
    raw: bool = False

    def filters(self) -> dict[str, str]:
        """The text filters that are set (to refill the dashboard's form)."""
        names = ("visitor", "key", "experiment", "type", "status")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def sql(self, config: ProjectConfig | None = None) -> tuple[str, list[Any]]:
        """An SQL condition (``""`` for none) and its parameters."""
        where: list[str] = []
        params: list[Any] = []
        if self.status is not None and self.status != "accepted":
            where.append("0")  # only accepted events are stored
        if self.visitor is not None:
            where.append("visitor_id = ?")
            params.append(self.visitor)
        if self.key is not None:
            where.append("key = ?")
            params.append(self.key)
        if self.type is not None:
            where.append("key = ?" if self.type == "impression" else "key != ?")
            params.append(ACTIVATE_EVENT_KEY)
        if self.experiment is not None:
            ids = [self.experiment, *_experiment_ids(self.experiment, config)]
            marks = ", ".join("?" for _ in ids)
            where.append(
                f"(experiment_id IN ({marks}) OR json_extract(metadata, '$.rule_key') = ?)"
            )
            params += [*ids, self.experiment]
        if self.after:
            where.append("id > ?")
            params.append(self.after)
        return " AND ".join(where), params


def _experiment_ids(key: str, config: ProjectConfig | None) -> list[str]:
    if config is None:
        return []
    experiment = config.experiments.get(key)
    return [] if experiment is None else [experiment.id]


_MOST: Final = {"limit": 100_000, "offset": 2**62, "after": 2**62}


def _int(name: str, text: str) -> int:
    most = _MOST[name]
    problem = f"{name} must be an integer from 0 to {most}, got {text[:40]!r}"
    try:
        value = int(text) if len(text) <= 20 else -1
    except ValueError:
        raise QueryError(problem) from None
    if not 0 <= value <= most:
        raise QueryError(problem)
    return value


def _choice(name: str, text: str, choices: tuple[str, ...]) -> str:
    if text not in choices:
        raise QueryError(f"{name} must be one of {', '.join(choices)}, got {text!r}")
    return text


def parse_query(
    params: Mapping[str, str], *, order: str = "asc", ignore: tuple[str, ...] = ()
) -> EventQuery:
    """Check query parameters; raise :class:`QueryError` naming the first bad one.

    Empty values count as absent (an HTML form sends every field). ``ignore`` lists
    extra names a caller handles itself.
    """
    values: dict[str, Any] = {"order": order}
    for name, text in params.items():
        if name in ignore:
            continue
        if name not in EVENT_PARAMS:
            listing = f"GET /events accepts {', '.join(EVENT_PARAMS)}"
            raise QueryError(unknown("query parameter", name, EVENT_PARAMS, listing=listing))
        if text == "":
            continue
        if name in ("limit", "offset", "after"):
            values[name] = _int(name, text)
        elif name == "type":
            values[name] = _choice(name, text, TYPES)
        elif name == "status":
            values[name] = _choice(name, text, STATUSES)
        elif name == "order":
            values[name] = _choice(name, text, ("asc", "desc"))
        elif name == "raw":
            values[name] = _choice(name, text, ("0", "1", "true", "false")) in ("1", "true")
        else:
            values[name] = text
    return EventQuery(**values)
