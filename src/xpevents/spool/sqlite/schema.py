"""The SQLite spool's tables, and the migration of older files.

Layout (schema version 2, ``PRAGMA user_version`` and the ``meta`` table say so):

* ``envelopes(id, digest, body)``: each distinct envelope stored once;
* ``records(id, envelope_id, visitor, size, enqueued_at, attempts, first_attempt_at,
  due_at, leased)``: waiting, leased and retrying visitors. ``due_at`` is when the
  record may be claimed: its enqueue time, the end of its lease while a sender holds
  it, or its next attempt time after a retry. A lease that expires simply makes the
  record due again;
* ``dead_letters(...)``: visitors that failed for good, with their reason;
* ``totals`` and ``evictions``: depth, bytes and dead-letter counts maintained in the
  same transactions (so bounds are checked in O(1)) and evictions by reason.

Version 1 (``queue`` and ``dead`` tables, envelopes stored inline) is migrated in place
when opened; a file written by a newer xpevents is refused with a clear error.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from pathlib import Path

from xpevents.errors import SpoolError

__all__ = ["FORMAT_NAME", "SCHEMA_VERSION", "digest", "prepare"]

logger = logging.getLogger("xpevents.spool.sqlite")

SCHEMA_VERSION = 2
"""The layout this version of xpevents writes."""
FORMAT_NAME = "xpevents-spool"

_SCHEMA_V2 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE envelopes (
    id INTEGER PRIMARY KEY,
    digest BLOB NOT NULL UNIQUE,
    body BLOB NOT NULL
);
CREATE TABLE records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    envelope_id INTEGER NOT NULL,
    visitor BLOB NOT NULL,
    size INTEGER NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    first_attempt_at REAL,
    due_at REAL NOT NULL,
    leased INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX records_due ON records (due_at);
CREATE INDEX records_envelope_due ON records (envelope_id, due_at);
CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    envelope_id INTEGER NOT NULL,
    visitor BLOB NOT NULL,
    size INTEGER NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    first_attempt_at REAL,
    reason TEXT NOT NULL,
    failed_at REAL NOT NULL
);
CREATE INDEX dead_letters_reason ON dead_letters (reason);
CREATE TABLE dead_reasons (reason TEXT PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE totals (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    depth INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    dead INTEGER NOT NULL
);
INSERT INTO totals (id, depth, bytes, dead) VALUES (1, 0, 0, 0);
CREATE TABLE evictions (reason TEXT PRIMARY KEY, count INTEGER NOT NULL);
"""


def digest(envelope: bytes) -> bytes:
    """The key an envelope is stored under in ``envelopes``."""
    return hashlib.blake2b(envelope, digest_size=16).digest()


def prepare(db: sqlite3.Connection, path: Path) -> None:
    """Create the tables in an empty file, or check (and migrate) an existing spool.

    Raises:
        SpoolError: the file is not an xpevents spool, or was written by a newer one.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = {
            row[0]
            for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        if version == 0 and not tables:
            _create(db)
        else:
            _check(db, path, version, tables)
            if version == 1:
                _migrate_v1(db, path)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _check(db: sqlite3.Connection, path: Path, version: int, tables: set[str]) -> None:
    meta: dict[str, str] = {}
    if "meta" in tables:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    if meta.get("format") != FORMAT_NAME:
        raise SpoolError(
            f"SQLite spool {str(path)!r}: this SQLite database is not an "
            f"xpevents spool (tables: {', '.join(sorted(tables)) or 'none'}, "
            f"user_version {version}); point the spool at another file"
        )
    if version > SCHEMA_VERSION:
        raise SpoolError(
            f"SQLite spool {str(path)!r}: written by a newer xpevents "
            f"(spool schema {version}, this version reads up to "
            f"{SCHEMA_VERSION}); upgrade xpevents, or point this process at "
            "another file"
        )
    if version not in (1, SCHEMA_VERSION):
        raise SpoolError(
            f"SQLite spool {str(path)!r}: unknown spool schema {version}; "
            "move the file aside and start a new spool"
        )


def _create(db: sqlite3.Connection) -> None:
    for statement in _SCHEMA_V2.split(";"):
        if statement.strip():
            db.execute(statement)
    _write_meta(db, created=True)


def _write_meta(db: sqlite3.Connection, *, created: bool) -> None:
    from xpevents._version import __version__

    now = repr(time.time())
    rows = [("format", FORMAT_NAME), ("schema_version", str(SCHEMA_VERSION))]
    rows.append(("created_at" if created else "migrated_at", now))
    rows.append(("written_by", f"xpevents {__version__}"))
    db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", rows)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _migrate_v1(db: sqlite3.Connection, path: Path) -> None:
    """Version 1 -> 2: intern envelopes, keep ids, ``first_attempt_at`` and ``due_at``.

    Version 1 had ``queue(id, envelope, visitor, enqueued_at, attempts,
    next_attempt_at, lease_until)`` and ``dead(id, envelope, visitor, enqueued_at,
    attempts, reason, failed_at)``. It did not record the first attempt time; a
    record already attempted gets its ``enqueued_at`` (retry-age limits then count
    from enqueue, never later than the truth). Leases are kept.
    """
    logger.warning("SQLite spool %s: migrating schema 1 -> %d", path, SCHEMA_VERSION)
    db.create_function("xp_digest", 1, digest, deterministic=True)
    for statement in _SCHEMA_V2.split(";"):
        statement = statement.strip()
        if statement and not statement.startswith("CREATE TABLE meta"):
            db.execute(statement)
    db.execute(
        "INSERT OR IGNORE INTO envelopes (digest, body) "
        "SELECT xp_digest(envelope), envelope FROM "
        "(SELECT envelope FROM queue UNION SELECT envelope FROM dead)"
    )
    db.execute(
        "INSERT INTO records (id, envelope_id, visitor, size, enqueued_at, attempts, "
        "first_attempt_at, due_at, leased) "
        "SELECT q.id, e.id, q.visitor, length(q.visitor), q.enqueued_at, q.attempts, "
        "CASE WHEN q.attempts > 0 THEN q.enqueued_at END, "
        "max(q.next_attempt_at, coalesce(q.lease_until, 0)), "
        "CASE WHEN coalesce(q.lease_until, 0) > q.next_attempt_at THEN 1 ELSE 0 END "
        "FROM queue q JOIN envelopes e ON e.digest = xp_digest(q.envelope) ORDER BY q.id"
    )
    db.execute(
        "INSERT INTO dead_letters (id, envelope_id, visitor, size, enqueued_at, attempts, "
        "first_attempt_at, reason, failed_at) "
        "SELECT d.id, e.id, d.visitor, length(d.visitor), d.enqueued_at, d.attempts, "
        "NULL, d.reason, d.failed_at "
        "FROM dead d JOIN envelopes e ON e.digest = xp_digest(d.envelope) ORDER BY d.id"
    )
    db.execute(
        "INSERT INTO dead_reasons (reason, count) "
        "SELECT reason, count(*) FROM dead_letters GROUP BY reason"
    )
    db.execute(
        "UPDATE totals SET depth = (SELECT count(*) FROM records), "
        "bytes = (SELECT coalesce(sum(size), 0) FROM records), "
        "dead = (SELECT count(*) FROM dead_letters)"
    )
    db.execute("DROP TABLE queue")
    db.execute("DROP TABLE dead")
    _write_meta(db, created=False)
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('migrated_from', '1')")
