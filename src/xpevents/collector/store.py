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

from xpevents._internal.paths import missing_directory
from xpevents.collector.loose import (
    LooseEvent,
    LoosePayload,
    LooseSnapshot,
    LooseVisitor,
    number,
    text,
)
from xpevents.errors import ConfigError
from xpevents.spool.envelope import ENVELOPE_KEYS

__all__ = ["EventStore", "StoredEvent"]

logger = logging.getLogger("xpevents.collector.store")

EventKey = tuple[str, str, int]
"""The de-duplication key of an event: ``(entity_id, uuid, timestamp)``."""

StoredEvent = tuple[LooseSnapshot, LooseEvent]
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


def _opt_bool(value: Any) -> int | None:
    """A JSON boolean as 0/1; anything else (absent, null, another type) NULL."""
    return int(value) if isinstance(value, bool) else None


def _json(value: Any) -> str | None:
    """A JSON column: the value re-encoded, NULL when absent or null."""
    return None if value is None or value is msgspec.UNSET else _encode(value).decode()


def _row(
    head: tuple[Any, ...],
    visitor: LooseVisitor,
    event: LooseEvent,
    decision_cols: tuple[Any, ...],
    visitor_cols: tuple[Any, ...],
) -> tuple[Any, ...]:
    """One ``events`` row, in :data:`_COLUMNS` order."""
    attributes, raw_text = visitor_cols
    return (
        *head,
        text(visitor.visitor_id) or "",
        text(visitor.session_id),
        text(event.entity_id) or "",
        event.uuid,
        text(event.key) or "",
        event.timestamp,
        number(event.revenue),
        number(event.value),
        _json(event.tags),
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

    Raises:
        ConfigError: the directory that would hold ``path`` does not exist.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        if self.path is not None and (problem := missing_directory(self.path)) is not None:
            raise ConfigError(f"events database {str(self.path)!r}: {problem}")
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
        self, region: str, payload: LoosePayload, raw_visitors: Sequence[bytes | msgspec.Raw]
    ) -> list[StoredEvent]:
        """Store the payload's events that were not seen before; return those.

        ``raw_visitors[i]`` is the JSON text of ``payload.visitors[i]`` as received,
        kept verbatim in the ``visitor`` column. Values of another type than the
        schema's are stored as JSON text (numbers, booleans) or NULL (``null``).
        """
        head = (
            time.time(),
            region,
            text(payload.account_id) or "",
            text(payload.project_id),
            text(payload.revision),
            text(payload.client_name),
            text(payload.client_version),
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
                    key = (text(event.entity_id) or "", event.uuid, event.timestamp)
                    if key in seen or key in new_keys:
                        continue
                    new_keys.add(key)
                    if visitor_cols is None:
                        attributes = _json(visitor.attributes) or "[]"
                        visitor_cols = (attributes, str(raw, "utf-8"))
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
    def _decision_columns(snapshot: LooseSnapshot) -> tuple[Any, ...]:
        if not snapshot.decisions:
            return (None, None, None, None, None, None)
        first = snapshot.decisions[0]
        holdback = first.is_campaign_holdback
        return (
            text(first.campaign_id),
            text(first.experiment_id),
            text(first.variation_id),
            int(holdback) if isinstance(holdback, bool) else 0,
            _json(first.metadata),
            _encode(snapshot.decisions).decode(),
        )

    def events(
        self,
        limit: int = 1000,
        offset: int = 0,
        *,
        raw: bool = False,
        where: str = "",
        params: Sequence[Any] = (),
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """Stored events in arrival order, JSON columns decoded, booleans as bools.

        ``raw=True`` leaves the ``visitor`` column as the JSON text received. ``where``
        is an SQL condition with ``?`` placeholders bound to ``params`` (built by
        :mod:`xpevents.collector.dashboard.queries`, never from raw user text).
        """
        decoded = _JSON_COLUMNS - {"visitor"} if raw else _JSON_COLUMNS
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
                if value is not None and name in decoded:
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
