"""Statements on the SQLite spool's tables, run inside the caller's transaction.

Every statement that adds or removes records or dead letters also updates ``totals``
(and ``dead_reasons``) in the same transaction, so the counters a bound is checked
against are never out of step with the rows. See :mod:`.schema` for the tables.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from xpevents._internal.cache import BoundedCache
from xpevents.spool.base import SpoolStats
from xpevents.spool.sqlite import schema, watermark

__all__ = [
    "MOVE_CHUNK",
    "Envelopes",
    "count_dead",
    "count_eviction",
    "delete_records",
    "evict_older_than",
    "evict_oldest",
    "ids_json",
    "insert_records",
    "move_to_dead_letters",
    "purge_dead_letters",
    "read_stats",
    "replay_dead_letters",
    "trim_dead_letters",
]

_EVICT_CHUNK = 10_000
MOVE_CHUNK = 10_000
"""Dead letters moved per transaction, so other processes are never blocked for long."""


class Envelopes:
    """Envelope ids by body and bodies by id, from the ``envelopes`` table, cached: a
    spool sees a handful of envelopes, looked up on every append and claim."""

    __slots__ = ("_bodies", "_ids")

    def __init__(self) -> None:
        self._ids: BoundedCache[bytes, int] = BoundedCache(4096)
        self._bodies: BoundedCache[int, bytes] = BoundedCache(4096)

    def id(self, db: sqlite3.Connection, envelope: bytes) -> int:
        """The id of ``envelope``, stored first if it is new."""
        found = self._ids.get(envelope)
        if found is not None:
            return found
        digest = schema.digest(envelope)
        db.execute(
            "INSERT OR IGNORE INTO envelopes (digest, body) VALUES (?, ?)", (digest, envelope)
        )
        envelope_id = int(
            db.execute("SELECT id FROM envelopes WHERE digest = ?", (digest,)).fetchone()[0]
        )
        self._ids.put(envelope, envelope_id)
        self._bodies.put(envelope_id, envelope)
        return envelope_id

    def body(self, db: sqlite3.Connection, envelope_id: int) -> bytes:
        """The envelope stored under ``envelope_id``."""
        body = self._bodies.get(envelope_id)
        if body is None:
            row = db.execute("SELECT body FROM envelopes WHERE id = ?", (envelope_id,)).fetchone()
            body = bytes(row[0])
            self._bodies.put(envelope_id, body)
        return body


def insert_records(
    db: sqlite3.Connection,
    envelopes: Envelopes,
    entries: Sequence[tuple[bytes, bytes]],
    now: float,
) -> tuple[int, int]:
    """Insert ``(envelope, visitor)`` pairs due ``now``; the spool's depth and bytes after."""
    rows = []
    total = 0
    last_envelope: bytes | None = None
    envelope_id = 0
    for envelope, visitor in entries:
        if envelope is not last_envelope:
            envelope_id = envelopes.id(db, envelope)
            last_envelope = envelope
        size = len(visitor)
        total += size
        rows.append((envelope_id, visitor, size, now, now))
    db.executemany(
        "INSERT INTO records (envelope_id, visitor, size, enqueued_at, due_at) "
        "VALUES (?, ?, ?, ?, ?)",
        rows,
    )
    depth, nbytes = db.execute(
        "UPDATE totals SET depth = depth + ?, bytes = bytes + ? WHERE id = 1 "
        "RETURNING depth, bytes",
        (len(rows), total),
    ).fetchone()
    return int(depth), int(nbytes)


def ids_json(ids: Sequence[int | str]) -> str:
    """Record ids as a JSON array, for ``IN (SELECT value FROM json_each(?))``."""
    return json.dumps([int(i) for i in ids])


def delete_records(db: sqlite3.Connection, ids: Sequence[int | str]) -> int:
    """Delete records (unknown ids are ignored); returns how many were deleted."""
    sizes = db.execute(
        "DELETE FROM records WHERE id IN (SELECT value FROM json_each(?)) RETURNING size",
        (ids_json(ids),),
    ).fetchall()
    if sizes:
        db.execute(
            "UPDATE totals SET depth = depth - ?, bytes = bytes - ? WHERE id = 1",
            (len(sizes), sum(row[0] for row in sizes)),
        )
    return len(sizes)


def evict_oldest(db: sqlite3.Connection, *, count: int = 0, nbytes: int = 0) -> int:
    """Delete the oldest ``count`` records, or the oldest holding ``nbytes``; returns
    how many were deleted."""
    evicted = freed = 0
    while (count and evicted < count) or (nbytes and freed < nbytes):
        limit = min(_EVICT_CHUNK, count - evicted) if count else _EVICT_CHUNK
        rows = db.execute("SELECT id, size FROM records ORDER BY id LIMIT ?", (limit,)).fetchall()
        if not rows:
            break
        chosen = []
        for record_id, size in rows:
            if nbytes and not count and freed >= nbytes:
                break
            chosen.append(record_id)
            freed += size
            evicted += 1
        delete_records(db, chosen)
    return evicted


def evict_older_than(db: sqlite3.Connection, cutoff: float) -> int:
    """Delete the records enqueued before ``cutoff``; returns how many.

    Records are read from the head in id order, which is enqueue order (appends and
    replays stamp the time of their commit), and the read stops at the first record
    enqueued at or after ``cutoff``: with nothing to evict it reads one row, not a
    chunk (a 100,000-record backlog cost 4 ms per check, in the relay's event loop).
    After the wall clock steps back, an older record behind a younger one is evicted
    once it reaches the head.
    """
    evicted = 0
    while True:
        chosen: list[int] = []
        rows = db.execute(
            "SELECT id, enqueued_at FROM records ORDER BY id LIMIT ?", (_EVICT_CHUNK,)
        )
        for record_id, enqueued_at in rows:
            if enqueued_at >= cutoff:
                break
            chosen.append(record_id)
        rows.close()
        if chosen:
            delete_records(db, chosen)
            evicted += len(chosen)
        if len(chosen) < _EVICT_CHUNK:
            return evicted


def count_eviction(db: sqlite3.Connection, reason: str, count: int) -> None:
    """Add ``count`` to the evictions of ``reason``."""
    db.execute(
        "INSERT INTO evictions (reason, count) VALUES (?, ?) "
        "ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count",
        (reason, count),
    )


def _by_reason(rows: Sequence[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[0]] = counts.get(row[0], 0) + 1
    return counts


def count_dead(db: sqlite3.Connection, counts: dict[str, int], *, sign: int = 1) -> None:
    """Add (``sign=-1``: remove) dead letters by reason to ``dead_reasons`` and ``totals``."""
    total = 0
    for reason, count in counts.items():
        if not count:
            continue
        total += count
        db.execute(
            "INSERT INTO dead_reasons (reason, count) VALUES (?, ?) "
            "ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count",
            (reason, sign * count),
        )
    if total:
        db.execute("DELETE FROM dead_reasons WHERE count <= 0")
        db.execute("UPDATE totals SET dead = dead + ? WHERE id = 1", (sign * total,))


def move_to_dead_letters(
    db: sqlite3.Connection,
    ids: Sequence[int | str],
    *,
    reason: str,
    now: float,
    attempts: int | None = None,
) -> None:
    """Move records to ``dead_letters`` with ``reason`` and ``attempts`` made (``None``:
    the stored count)."""
    ids_text = ids_json(ids)
    moved = db.execute(
        "INSERT INTO dead_letters (envelope_id, visitor, size, enqueued_at, attempts, "
        "first_attempt_at, reason, failed_at) "
        "SELECT envelope_id, visitor, size, enqueued_at, coalesce(?, attempts), "
        "first_attempt_at, ?, ? FROM records WHERE id IN (SELECT value FROM json_each(?)) "
        "ORDER BY id",
        (attempts, reason, now, ids_text),
    ).rowcount
    delete_records(db, ids)
    count_dead(db, {reason: moved})


def trim_dead_letters(db: sqlite3.Connection, keep: int) -> int:
    """Delete the oldest dead letters beyond ``keep``; returns how many."""
    (dead,) = db.execute("SELECT dead FROM totals WHERE id = 1").fetchone()
    if dead <= keep:
        return 0
    rows = db.execute(
        "DELETE FROM dead_letters WHERE id IN "
        "(SELECT id FROM dead_letters ORDER BY id LIMIT ?) RETURNING reason",
        (dead - keep,),
    ).fetchall()
    count_dead(db, _by_reason(rows), sign=-1)
    return len(rows)


def replay_dead_letters(
    db: sqlite3.Connection, reason: str | None, now: float
) -> tuple[int, int, int] | None:
    """Move up to :data:`MOVE_CHUNK` dead letters (of ``reason``, or all) back to
    ``records`` as fresh records due ``now``.

    Returns ``(moved, depth, bytes)`` after the move, or ``None`` when none is left.
    """
    ids = [
        row[0]
        for row in db.execute(
            "SELECT id FROM dead_letters WHERE (?1 IS NULL OR reason = ?1) ORDER BY id LIMIT ?2",
            (reason, MOVE_CHUNK),
        )
    ]
    if not ids:
        return None
    ids_text = ids_json(ids)
    moved = db.execute(
        "INSERT INTO records (envelope_id, visitor, size, enqueued_at, attempts, "
        "first_attempt_at, due_at, leased) "
        "SELECT envelope_id, visitor, size, ?1, 0, NULL, ?1, 0 FROM dead_letters "
        "WHERE id IN (SELECT value FROM json_each(?2)) ORDER BY id",
        (now, ids_text),
    ).rowcount
    rows = db.execute(
        "DELETE FROM dead_letters WHERE id IN (SELECT value FROM json_each(?)) "
        "RETURNING size, reason",
        (ids_text,),
    ).fetchall()
    count_dead(db, _by_reason([(r[1],) for r in rows]), sign=-1)
    depth, nbytes = db.execute(
        "UPDATE totals SET depth = depth + ?, bytes = bytes + ? "
        "WHERE id = 1 RETURNING depth, bytes",
        (moved, sum(row[0] for row in rows)),
    ).fetchone()
    return moved, depth, nbytes


def purge_dead_letters(db: sqlite3.Connection, reason: str | None) -> int:
    """Delete up to :data:`MOVE_CHUNK` dead letters (of ``reason``, or all); returns how
    many."""
    rows = db.execute(
        "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters "
        "WHERE (?1 IS NULL OR reason = ?1) ORDER BY id LIMIT ?2) RETURNING reason",
        (reason, MOVE_CHUNK),
    ).fetchall()
    count_dead(db, _by_reason(rows), sign=-1)
    return len(rows)


def read_stats(db: sqlite3.Connection, now: float) -> SpoolStats:
    """Depth and bytes (maintained counters), leases, oldest record, dead letters,
    evictions and losses, read in the caller's snapshot."""
    depth, nbytes = db.execute("SELECT depth, bytes FROM totals WHERE id = 1").fetchone()
    leased = db.execute(
        "SELECT count(*) FROM records WHERE due_at > ? AND leased = 1", (now,)
    ).fetchone()[0]
    oldest = db.execute("SELECT enqueued_at FROM records ORDER BY id LIMIT 1").fetchone()
    dead = dict(db.execute("SELECT reason, count FROM dead_reasons").fetchall())
    counted = dict(db.execute("SELECT reason, count FROM evictions").fetchall())
    evicted, lost = watermark.split_counts(counted)
    return SpoolStats(
        depth=int(depth),
        bytes=int(nbytes),
        leased=int(leased),
        oldest_enqueued_at=None if oldest is None else float(oldest[0]),
        dead_letters=MappingProxyType(dead),
        evicted=MappingProxyType(evicted),
        lost=MappingProxyType(lost),
    )
