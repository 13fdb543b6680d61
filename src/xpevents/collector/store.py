"""SQLite storage of accepted events, de-duplicated on ``(entity_id, uuid, timestamp)``.

One row per snapshot event. The hot path is one ``executemany`` in one transaction
per request; de-duplication is an in-memory set consulted before the insert, backed
by a ``UNIQUE`` constraint (``INSERT OR IGNORE``) so that a database file reopened
after a restart keeps rejecting events it already holds.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from xpevents.serving.schema import Payload, Snapshot, SnapshotEvent, Visitor
from xpevents.spool.envelope import ENVELOPE_KEYS

__all__ = ["EventStore", "StoredEvent"]

logger = logging.getLogger("xpevents.collector.store")

EventKey = tuple[str, str, int]
"""The de-duplication key of an event: ``(entity_id, uuid, timestamp)``."""

StoredEvent = tuple[Snapshot, SnapshotEvent]
"""A newly stored (not duplicate) event with the snapshot it came in."""

_COLUMNS: Final = (
    "received_at",
    "region",
    *ENVELOPE_KEYS,
    "visitor_id",
    "session_id",
    "entity_id",
    "uuid",
    "key",
    "timestamp",
    "revenue",
    "value",
    "tags",
    "campaign_id",
    "experiment_id",
    "variation_id",
    "is_campaign_holdback",
    "metadata",
    "decisions",
    "attributes",
    "visitor",
)
_JSON_COLUMNS: Final = frozenset({"tags", "metadata", "decisions", "attributes", "visitor"})
_BOOL_COLUMNS: Final = frozenset({"anonymize_ip", "enrich_decisions", "is_campaign_holdback"})

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    region TEXT NOT NULL,
    account_id TEXT NOT NULL,
    project_id TEXT,
    revision TEXT,
    client_name TEXT,
    client_version TEXT,
    anonymize_ip INTEGER,
    enrich_decisions INTEGER,
    visitor_id TEXT NOT NULL,
    session_id TEXT,
    entity_id TEXT NOT NULL,
    uuid TEXT NOT NULL,
    key TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    revenue INTEGER,
    value REAL,
    tags TEXT,
    campaign_id TEXT,
    experiment_id TEXT,
    variation_id TEXT,
    is_campaign_holdback INTEGER,
    metadata TEXT,
    decisions TEXT,
    attributes TEXT NOT NULL,
    visitor TEXT NOT NULL,
    UNIQUE (entity_id, uuid, timestamp)
)
"""
_INSERT: Final = (
    f"INSERT OR IGNORE INTO events ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)
_SELECT: Final = f"SELECT id, {', '.join(_COLUMNS)} FROM events"

_encode = msgspec.json.Encoder().encode
_decode_json = msgspec.json.Decoder().decode


def _opt_bool(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _row(
    head: tuple[Any, ...],
    visitor: Visitor,
    event: SnapshotEvent,
    decision_cols: tuple[Any, ...],
    visitor_cols: tuple[Any, ...],
) -> tuple[Any, ...]:
    """One ``events`` row, in :data:`_COLUMNS` order."""
    attributes, raw_text = visitor_cols
    return (
        *head,
        visitor.visitor_id,
        visitor.session_id,
        event.entity_id,
        event.uuid,
        event.key,
        event.timestamp,
        event.revenue,
        event.value,
        None if event.tags is None else _encode(event.tags).decode(),
        *decision_cols,
        attributes,
        raw_text,
    )


class EventStore:
    """Accepted events in SQLite (in memory by default, WAL mode when a file).

    Args:
        path: database file, or ``None`` for a private in-memory database.

    Safe to call from any thread (one lock around the connection); the collector
    calls it from its event loop only.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self._lock = threading.Lock()
        target = ":memory:" if self.path is None else str(self.path)
        self._db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        if self.path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._seen: set[EventKey] = {
            (e, u, t)
            for e, u, t in self._db.execute("SELECT entity_id, uuid, timestamp FROM events")
        }
        if self._seen:
            logger.info("opened %s with %d stored events", self.path, len(self._seen))

    def __len__(self) -> int:
        """Number of stored (unique) events."""
        return len(self._seen)

    def add(
        self, region: str, payload: Payload, raw_visitors: Sequence[bytes | msgspec.Raw]
    ) -> list[StoredEvent]:
        """Store the payload's events that were not seen before; return those.

        ``raw_visitors[i]`` is the JSON text of ``payload.visitors[i]`` as received,
        kept verbatim in the ``visitor`` column.
        """
        head = (
            time.time(),
            region,
            payload.account_id,
            payload.project_id,
            payload.revision,
            payload.client_name,
            payload.client_version,
            _opt_bool(payload.anonymize_ip),
            _opt_bool(payload.enrich_decisions),
        )
        seen = self._seen
        rows: list[tuple[Any, ...]] = []
        stored: list[StoredEvent] = []
        new_keys: set[EventKey] = set()
        for visitor, raw in zip(payload.visitors, raw_visitors, strict=True):
            # Encoded once per visitor and snapshot, and only when one of their events is new.
            visitor_cols: tuple[Any, ...] | None = None
            for snapshot in visitor.snapshots:
                decision_cols: tuple[Any, ...] | None = None
                for event in snapshot.events:
                    key = (event.entity_id, event.uuid, event.timestamp)
                    if key in seen or key in new_keys:
                        continue
                    new_keys.add(key)
                    if visitor_cols is None:
                        visitor_cols = (_encode(visitor.attributes).decode(), str(raw, "utf-8"))
                    if decision_cols is None:
                        decision_cols = self._decision_columns(snapshot)
                    rows.append(_row(head, visitor, event, decision_cols, visitor_cols))
                    stored.append((snapshot, event))
        if rows:
            self._insert(rows)
            seen.update(new_keys)
        return stored

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` in one transaction."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                db.executemany(_INSERT, rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    @staticmethod
    def _decision_columns(snapshot: Snapshot) -> tuple[Any, ...]:
        if not snapshot.decisions:
            return (None, None, None, None, None, None)
        first = snapshot.decisions[0]
        return (
            first.campaign_id,
            first.experiment_id,
            first.variation_id,
            int(first.is_campaign_holdback),
            None if first.metadata is None else _encode(first.metadata).decode(),
            _encode(snapshot.decisions).decode(),
        )

    def events(
        self,
        limit: int = 1000,
        offset: int = 0,
        *,
        where: str = "",
        params: Sequence[Any] = (),
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """Stored events in arrival order, JSON columns decoded, booleans as bools.

        ``where`` is an SQL condition with ``?`` placeholders bound to ``params`` (built
        by :mod:`xpevents.collector.dashboard.queries`, never from raw user text).
        """
        order = "DESC" if newest_first else "ASC"
        sql = f"{_SELECT} {'WHERE ' + where if where else ''} ORDER BY id {order} LIMIT ? OFFSET ?"
        with self._lock:
            cursor = self._db.execute(sql, (*params, limit, offset))
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        out: list[dict[str, Any]] = []
        for row in rows:
            item: dict[str, Any] = {}
            for name, value in zip(names, row, strict=True):
                if value is not None and name in _JSON_COLUMNS:
                    value = _decode_json(value)
                elif value is not None and name in _BOOL_COLUMNS:
                    value = bool(value)
                item[name] = value
            out.append(item)
        return out

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only SQL query over the ``events`` table (for the dashboard)."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def clear(self) -> None:
        """Delete every stored event (and forget their de-duplication keys)."""
        with self._lock:
            self._db.execute("DELETE FROM events")
            self._seen.clear()

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            self._db.close()
