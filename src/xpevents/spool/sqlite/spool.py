"""A durable spool in one SQLite file, shared safely by the processes of one machine.

Why SQLite: one file, no server, transactions that survive a process crash, and safe
sharing between worker processes (gunicorn, uwsgi, multiprocessing) when used the way
this package uses it:

* **WAL mode** (``journal_mode=WAL``): readers never block the writer; a commit is an
  append to the ``-wal`` file. With ``synchronous=NORMAL`` (``sync="normal"``, the
  default) a committed transaction survives a process crash (SIGKILL) but the last
  few commits may be lost on power loss or an OS crash; ``sync="full"`` fsyncs the WAL
  on every commit and survives power loss too, at the cost of one fsync per
  ``append`` (milliseconds on most disks; see ``docs/operations.md``).
* **Short ``BEGIN IMMEDIATE`` transactions** for every write, claims included: the
  write lock is taken at the start, so two processes never lease the same records,
  and ``busy_timeout`` makes a process wait for the lock instead of failing.
* **Fork safety**: a connection is never used across ``fork()``; a child opens its
  own (the inherited one is left untouched, never closed, so the parent's WAL is not
  disturbed).

The tables and the migration of older files are in :mod:`.schema`; opening the file
and turning SQLite errors into messages with a fix in :mod:`.files`; the statements
that keep the counters in step in :mod:`.tables`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from xpevents._internal.closing import Closing
from xpevents._internal.ratelimit import LogEvery
from xpevents._internal.validate import positive_int, positive_number
from xpevents.errors import ConfigError
from xpevents.spool import bounds
from xpevents.spool.base import DeadLetter, SpoolRecord, SpoolStats
from xpevents.spool.sqlite import files, tables, watermark
from xpevents.spool.sqlite.url import DEFAULT_CHECKPOINT_PAGES, options_from_url
from xpevents.spool.sqlite.watermark import Mark

__all__ = ["SqliteSpool"]

logger = logging.getLogger("xpevents.spool.sqlite")

_LOG_EVERY = 10.0


class SqliteSpool(Closing):
    """A durable spool in one SQLite file (WAL mode), shared by local processes.

    Args:
        path: the database file; created (mode 0600) if missing, with its directory
            required to exist.
        max_spool_events: records kept at most; beyond it the oldest are evicted and
            counted as ``max_spool_events``. Default 10,000,000.
        max_spool_bytes: visitor bytes kept at most (oldest evicted, counted as
            ``max_spool_bytes``). Default 1 GiB.
        max_event_age: seconds; older records are evicted (``max_event_age``), checked
            at most once a second on append. Default 7 days.
        max_dead_letters: dead letters kept at most (oldest evicted, counted as
            ``max_dead_letters``). Default 1,000,000.
        sync: ``"normal"`` (survives a process crash; the default) or ``"full"``
            (fsync per commit: survives power loss, slower).
        busy_timeout: seconds a process waits for another one's write lock before an
            operation fails with :class:`SpoolError`. Default 10.
        checkpoint_pages: SQLite's ``wal_autocheckpoint``: the commit that brings the
            log to this many pages checkpoints it before returning. Default 1000.
        create: create the file when it does not exist (default). ``False`` raises
            :class:`SpoolError` instead (inspection tools).

    Raises:
        ConfigError: an argument is invalid.
        SpoolError: the file cannot be opened: missing directory, permission denied,
            read-only file system, disk full, corrupt or foreign file, or a spool written
            by a newer xpevents. The message names the path and the fix.
    """

    durable = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_spool_events: int = bounds.DEFAULT_MAX_EVENTS,
        max_spool_bytes: int = bounds.DEFAULT_MAX_BYTES,
        max_event_age: float = bounds.DEFAULT_MAX_AGE,
        max_dead_letters: int = bounds.DEFAULT_MAX_DEAD_LETTERS,
        sync: Literal["normal", "full"] = "normal",
        busy_timeout: float = 10.0,
        checkpoint_pages: int = DEFAULT_CHECKPOINT_PAGES,
        create: bool = True,
    ) -> None:
        bounds.check_bounds(
            "SqliteSpool",
            max_spool_events=max_spool_events,
            max_spool_bytes=max_spool_bytes,
            max_event_age=max_event_age,
            max_dead_letters=max_dead_letters,
        )
        positive_number("busy_timeout", busy_timeout, owner="SqliteSpool")
        positive_int("checkpoint_pages", checkpoint_pages, owner="SqliteSpool")
        if sync not in ("normal", "full"):
            raise ConfigError(f"SqliteSpool(sync={sync!r}): expected 'normal' or 'full'")
        self.path = Path(os.fspath(path))
        absolute = self.path.absolute()
        self.url = f"sqlite:///{absolute}" if absolute.is_absolute() else f"sqlite:///{path}"
        self.max_spool_events = max_spool_events
        self.max_spool_bytes = max_spool_bytes
        self.max_event_age = float(max_event_age)
        self.max_dead_letters = max_dead_letters
        self.sync = sync
        self.busy_timeout = float(busy_timeout)
        self._envelopes = tables.Envelopes()
        self._last_age_check = 0.0
        self._evict_log = LogEvery(_LOG_EVERY)
        self.checkpoint_pages = pages = checkpoint_pages
        self._db = files.Database(self.path, create, self.busy_timeout, sync, pages)
        with self._db.write("recover") as db:
            watermark.recover(db, self.path)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SqliteSpool:
        """Open ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``.

        Query parameters ``sync``, ``busy_timeout``, ``checkpoint_pages`` are accepted
        (``sqlite:////var/spool/x.db?sync=full``); keyword options override them.

        Raises:
            ConfigError: the URL is not a valid SQLite spool URL.
        """
        path, merged = options_from_url(url)
        merged.update(options)
        return cls(path, **merged)

    # -- the Spool interface --------------------------------------------------------

    def append(
        self, entries: Sequence[tuple[bytes, bytes]], *, now: float, mark: Mark | None = None
    ) -> None:
        """Store ``(envelope, visitor)`` pairs (and a front's ``mark``) in one transaction.

        Raises:
            SpoolError: the write failed (disk full, lock timeout, I/O error...).
        """
        if not entries:
            return
        with self._db.write("append", guarded=True) as db:
            self._insert(db, entries, now, mark)

    def try_append(self, entries: Sequence[tuple[bytes, bytes]], *, now: float) -> bool:
        """:meth:`append` if the write lock is free now; ``False`` (nothing written)
        while another thread or process holds it, instead of waiting for it.

        Raises:
            SpoolError: as :meth:`append`.
        """
        if not entries:
            return True
        with self._db.try_write("append", guarded=True) as db:
            if db is None:
                return False
            self._insert(db, entries, now, None)
        return True

    def _insert(
        self,
        db: sqlite3.Connection,
        entries: Sequence[tuple[bytes, bytes]],
        now: float,
        mark: Mark | None,
    ) -> None:
        depth, nbytes = tables.insert_records(db, self._envelopes, entries, now)
        self._enforce_bounds(db, depth, nbytes, now)
        if mark is not None:
            watermark.record_commit(db, *mark)

    def loss_watermark(self) -> watermark.Watermark:
        """Loss accounting for a front that holds visitors before committing them."""
        return watermark.Watermark(self.path)

    def _enforce_bounds(self, db: sqlite3.Connection, depth: int, nbytes: int, now: float) -> None:
        if depth > self.max_spool_events:
            count = depth - self.max_spool_events
            self._count_eviction(db, "max_spool_events", tables.evict_oldest(db, count=count))
        if nbytes > self.max_spool_bytes:
            over = nbytes - self.max_spool_bytes
            self._count_eviction(db, "max_spool_bytes", tables.evict_oldest(db, nbytes=over))
        if now - self._last_age_check >= bounds.AGE_CHECK_EVERY:
            self._last_age_check = now
            cutoff = now - self.max_event_age
            self._count_eviction(db, "max_event_age", tables.evict_older_than(db, cutoff))

    def _count_eviction(self, db: sqlite3.Connection, reason: str, count: int) -> None:
        if not count:
            return
        tables.count_eviction(db, reason, count)
        evicted = self._evict_log.tally(reason, count)
        if evicted is not None:
            logger.warning(
                "SQLite spool %s: evicted %d oldest record(s) (%s); raise the bound or "
                "fix delivery",
                self.path,
                evicted,
                reason,
            )

    def claim(
        self, *, max_records: int, max_bytes: int, lease: float, now: float
    ) -> list[SpoolRecord]:
        """Lease up to ``max_records`` due records of one envelope (``BEGIN IMMEDIATE``)."""
        if max_records <= 0:
            return []
        with self._db.write("claim") as db:
            first = db.execute(
                "SELECT envelope_id FROM records WHERE due_at <= ? ORDER BY due_at, id LIMIT 1",
                (now,),
            ).fetchone()
            if first is None:
                return []
            envelope_id = int(first[0])
            envelope = self._envelopes.body(db, envelope_id)
            rows = db.execute(
                "SELECT id, visitor, size, enqueued_at, attempts, first_attempt_at FROM records "
                "WHERE envelope_id = ? AND due_at <= ? ORDER BY due_at, id LIMIT ?",
                (envelope_id, now, max_records),
            )
            records: list[SpoolRecord] = []
            total = 0
            # Rows are stepped one at a time and the statement is stopped at the byte
            # cap: under a backlog, max_records (the queue's bound) is several times what
            # max_bytes lets one batch carry, and every row fetched costs its blob's copy.
            for record_id, visitor, size, enqueued_at, attempts, first_attempt_at in rows:
                if records and total + size > max_bytes:
                    break
                total += size
                records.append(
                    SpoolRecord(
                        id=record_id,
                        envelope=envelope,
                        visitor=bytes(visitor),
                        enqueued_at=enqueued_at,
                        attempts=attempts,
                        first_attempt_at=first_attempt_at,
                    )
                )
            rows.close()
            db.execute(
                "UPDATE records SET due_at = ?, leased = 1 "
                "WHERE id IN (SELECT value FROM json_each(?))",
                (now + lease, tables.ids_json([r.id for r in records])),
            )
            return records

    def ack(self, ids: Sequence[int | str]) -> None:
        """Delete delivered records (unknown ids are ignored)."""
        if not ids:
            return
        with self._db.write("ack") as db:
            tables.delete_records(db, ids)

    def retry(
        self,
        ids: Sequence[int | str],
        *,
        attempts: int,
        first_attempt_at: float,
        next_attempt_at: float,
    ) -> None:
        """Release the leases and store the retry schedule with the records."""
        if not ids:
            return
        with self._db.write("retry") as db:
            db.execute(
                "UPDATE records SET attempts = ?, first_attempt_at = ?, due_at = ?, leased = 0 "
                "WHERE id IN (SELECT value FROM json_each(?))",
                (attempts, first_attempt_at, next_attempt_at, tables.ids_json(ids)),
            )

    def dead_letter(
        self,
        ids: Sequence[int | str],
        *,
        reason: str,
        now: float,
        attempts: int | None = None,
    ) -> None:
        """Move the records to ``dead_letters`` with ``reason`` (and ``attempts`` made)."""
        if not ids:
            return
        with self._db.write("dead_letter") as db:
            tables.move_to_dead_letters(db, ids, reason=reason, now=now, attempts=attempts)
            forgotten = tables.trim_dead_letters(db, self.max_dead_letters)
            self._count_eviction(db, "max_dead_letters", forgotten)

    def next_due_at(self, *, now: float) -> float | None:
        """Earliest ``due_at`` (``now`` if something is due), or ``None`` when empty."""
        rows = self._db.read("next_due_at", "SELECT min(due_at) FROM records")
        due = rows[0][0]
        if due is None:
            return None
        return now if due <= now else float(due)

    def stats(self, *, now: float) -> SpoolStats:
        """Depth and bytes (maintained counters), leases, oldest record, dead letters."""
        with self._db.snapshot("stats") as db:
            return tables.read_stats(db, now)

    def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters."""
        rows = self._db.read(
            "dead_letters",
            "SELECT d.id, e.body, d.visitor, d.reason, d.failed_at, d.attempts "
            "FROM dead_letters d JOIN envelopes e ON e.id = d.envelope_id "
            "ORDER BY d.id LIMIT ?",
            (limit,),
        )
        return [
            DeadLetter(
                id=row[0],
                envelope=bytes(row[1]),
                visitor=bytes(row[2]),
                reason=row[3],
                failed_at=row[4],
                attempts=row[5],
            )
            for row in rows
        ]

    def replay_dead_letters(self, *, reason: str | None = None, now: float) -> int:
        """Re-queue dead letters (of ``reason``, or all) as fresh records due ``now``.

        They get ``enqueued_at = now`` and a reset retry schedule (attempts 0), so the
        age bound and retry-age limits start afresh. Moved in chunks of 10,000 per
        transaction so that other processes are never blocked for long.
        """
        replayed = 0
        while True:
            with self._db.write("replay_dead_letters", guarded=True) as db:
                chunk = tables.replay_dead_letters(db, reason, now)
                if chunk is None:
                    break
                moved, depth, nbytes = chunk
                self._enforce_bounds(db, depth, nbytes, now)
                replayed += moved
        if replayed:
            logger.info("SQLite spool %s: replayed %d dead letter(s)", self.path, replayed)
        return replayed

    def purge_dead_letters(self, *, reason: str | None = None) -> int:
        """Delete dead letters (of ``reason``, or all), in chunks; returns how many."""
        purged = 0
        while True:
            with self._db.write("purge_dead_letters") as db:
                count = tables.purge_dead_letters(db, reason)
            purged += count
            if count < tables.MOVE_CHUNK:
                break
        if purged:
            logger.info("SQLite spool %s: purged %d dead letter(s)", self.path, purged)
        return purged

    # -- extras beyond the Spool protocol --------------------------------------------

    def make_due(self, *, now: float) -> int:
        """Make records waiting for a retry due ``now`` (clears backoff, keeps leases).

        Returns how many records were rescheduled (``xpevents spool replay URL``).
        """
        with self._db.write("make_due") as db:
            return int(
                db.execute(
                    "UPDATE records SET due_at = ? WHERE leased = 0 AND due_at > ?", (now, now)
                ).rowcount
            )

    @property
    def problem(self) -> str | None:
        """Why the spool refuses writes (its file was deleted or replaced), or ``None``.

        Checked now (one ``stat``), and before every commit that adds visitors.
        """
        return self._db.identity.check()

    def schema_version(self) -> int:
        """The schema version of the open file (``PRAGMA user_version``)."""
        return int(self._db.read("schema_version", "PRAGMA user_version")[0][0])

    def close(self) -> None:
        """Close the connection (never the one inherited from a parent). Idempotent."""
        self._db.close()

    def __repr__(self) -> str:
        return f"SqliteSpool({str(self.path)!r}, sync={self.sync!r})"
