"""A durable spool in one SQLite file, shared safely by the processes of one machine.

Why SQLite: one file, no server, transactions that survive a process crash, and safe
sharing between worker processes (gunicorn, uwsgi, multiprocessing) when used the way
this module uses it:

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

Files are created with mode 0600; SQLite gives the ``-wal`` and ``-shm`` files the mode
of the database file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from xpevents._internal import forking
from xpevents._internal.cache import BoundedCache
from xpevents._internal.ratelimit import LogEvery
from xpevents._internal.validate import positive_int, positive_number
from xpevents.errors import ConfigError, SpoolError
from xpevents.spool.base import DeadLetter, SpoolRecord, SpoolStats

logger = logging.getLogger("xpevents.spool.sqlite")

SCHEMA_VERSION = 2
"""The layout this version of xpevents writes."""
FORMAT_NAME = "xpevents-spool"

DEFAULT_MAX_EVENTS = 10_000_000
DEFAULT_MAX_BYTES = 1 << 30
DEFAULT_MAX_AGE = 7 * 86400.0
DEFAULT_MAX_DEAD_LETTERS = 1_000_000

_EVICT_CHUNK = 10_000
_MOVE_CHUNK = 10_000
_AGE_CHECK_EVERY = 1.0
_LOG_EVERY = 10.0

# Connections inherited across fork(): kept referenced forever so that garbage
# collection never closes them in the child (closing could checkpoint or delete the
# parent's WAL).
_abandoned: list[sqlite3.Connection] = []

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


def _digest(envelope: bytes) -> bytes:
    return hashlib.blake2b(envelope, digest_size=16).digest()


def _ids_json(ids: Sequence[int | str]) -> str:
    return json.dumps([int(i) for i in ids])


def path_from_url(url: str) -> tuple[str, dict[str, str]]:
    """Split ``sqlite:///relative.db`` / ``sqlite:////abs.db?sync=full`` into path and options.

    Raises:
        ConfigError: not an SQLite spool URL.
    """
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ConfigError(f"spool URL {url!r}: expected the scheme 'sqlite://'")
    if parts.netloc:
        raise ConfigError(
            f"spool URL {url!r}: SQLite URLs have no host; use 'sqlite:///relative/path.db' "
            "or 'sqlite:////absolute/path.db' (three or four slashes)"
        )
    path = unquote(parts.path)
    if path.startswith("/"):
        path = path[1:]  # sqlite:///rel.db -> "rel.db"; sqlite:////abs.db -> "/abs.db"
    if not path or path.endswith("/"):
        raise ConfigError(
            f"spool URL {url!r}: no file name; use 'sqlite:///relative/path.db' or "
            "'sqlite:////absolute/path.db'"
        )
    if path == ":memory:":
        raise ConfigError(
            f"spool URL {url!r}: an in-memory SQLite database is not durable; use 'memory://'"
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    return path, options


class SqliteSpool:
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
        max_spool_events: int = DEFAULT_MAX_EVENTS,
        max_spool_bytes: int = DEFAULT_MAX_BYTES,
        max_event_age: float = DEFAULT_MAX_AGE,
        max_dead_letters: int = DEFAULT_MAX_DEAD_LETTERS,
        sync: Literal["normal", "full"] = "normal",
        busy_timeout: float = 10.0,
        create: bool = True,
    ) -> None:
        positive_int("max_spool_events", max_spool_events, owner="SqliteSpool")
        positive_int("max_spool_bytes", max_spool_bytes, owner="SqliteSpool")
        positive_number("max_event_age", max_event_age, owner="SqliteSpool")
        positive_int("max_dead_letters", max_dead_letters, owner="SqliteSpool")
        positive_number("busy_timeout", busy_timeout, owner="SqliteSpool")
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
        self._lock = threading.Lock()
        self._envelope_ids: BoundedCache[bytes, int] = BoundedCache(4096)
        self._envelope_bodies: BoundedCache[int, bytes] = BoundedCache(4096)
        self._last_age_check = 0.0
        self._evict_log = LogEvery(_LOG_EVERY)
        self._closed = False
        self._pid = os.getpid()
        self._db = self._open(create=create)
        forking.track(self, forking.Stage.STORE)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SqliteSpool:
        """Open ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``.

        Query parameters ``sync`` and ``busy_timeout`` are accepted
        (``sqlite:////var/spool/x.db?sync=full``); keyword options override them.

        Raises:
            ConfigError: the URL is not a valid SQLite spool URL.
        """
        path, query = path_from_url(url)
        merged: dict[str, Any] = {}
        for key, value in query.items():
            if key == "sync":
                merged["sync"] = value
            elif key == "busy_timeout":
                try:
                    merged["busy_timeout"] = float(value)
                except ValueError:
                    raise ConfigError(
                        f"spool URL {url!r}: busy_timeout={value!r} is not a number"
                    ) from None
            else:
                raise ConfigError(
                    f"spool URL {url!r}: unknown option {key!r} (known: sync, busy_timeout)"
                )
        merged.update(options)
        return cls(path, **merged)

    # -- opening ------------------------------------------------------------------

    def _open(self, *, create: bool) -> sqlite3.Connection:
        path = self.path
        directory = path.parent if str(path.parent) else Path(".")
        if not directory.is_dir():
            raise SpoolError(
                f"SQLite spool {str(path)!r}: directory {str(directory)!r} does not exist; "
                "create it or choose another path"
            )
        if not path.exists():
            if not create:
                raise SpoolError(f"SQLite spool {str(path)!r}: no such file")
            self._create_file(path)
        elif not path.is_file():
            raise SpoolError(f"SQLite spool {str(path)!r}: exists but is not a regular file")
        if not os.access(path, os.R_OK | os.W_OK) or not os.access(directory, os.W_OK | os.X_OK):
            raise SpoolError(
                f"SQLite spool {str(path)!r}: not writable (the file and its directory must "
                "be writable: SQLite creates -wal and -shm files next to it); fix the "
                "permissions or choose another path"
            )
        try:
            db = sqlite3.connect(
                str(path),
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as error:
            raise self._error("cannot open", error) from error
        try:
            self._configure(db)
            self._prepare_schema(db)
        except SpoolError:
            db.close()
            raise
        except sqlite3.Error as error:
            db.close()
            raise self._error("cannot open", error) from error
        self._warn_if_loose_mode(path)
        return db

    def _create_file(self, path: Path) -> None:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return  # another process created it first
        except PermissionError as error:
            raise SpoolError(
                f"SQLite spool {str(path)!r}: cannot create the file: permission denied; "
                "choose a writable path or fix the directory's permissions"
            ) from error
        except OSError as error:
            if error.errno == errno.EROFS:
                raise SpoolError(
                    f"SQLite spool {str(path)!r}: the file system is read-only; choose a "
                    "path on a writable file system"
                ) from error
            if error.errno == errno.ENOSPC:
                raise SpoolError(
                    f"SQLite spool {str(path)!r}: the disk is full; free space or choose "
                    "another path"
                ) from error
            raise SpoolError(f"SQLite spool {str(path)!r}: cannot create: {error}") from error
        os.fchmod(fd, 0o600)  # the umask may have removed bits, never added any
        os.close(fd)

    def _warn_if_loose_mode(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                logger.warning(
                    "SQLite spool %s has mode %o: other users can read queued events; "
                    "run chmod 600 on it (and its -wal/-shm files)",
                    path,
                    mode,
                )

    def _configure(self, db: sqlite3.Connection) -> None:
        db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        # The first statement that reads the file: a foreign or corrupt file fails here.
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise SpoolError(
                f"SQLite spool {str(self.path)!r}: cannot switch to WAL mode (got {mode!r}); "
                "the file system may not support shared memory (network file systems do "
                "not): put the spool on a local disk"
            )
        db.execute(f"PRAGMA synchronous = {'FULL' if self.sync == 'full' else 'NORMAL'}")
        db.execute("PRAGMA foreign_keys = OFF")

    def _prepare_schema(self, db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            tables = {
                row[0]
                for row in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%'"
                )
            }
            if version == 0 and not tables:
                self._create_schema(db)
            else:
                meta: dict[str, str] = {}
                if "meta" in tables:
                    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
                if meta.get("format") != FORMAT_NAME:
                    raise SpoolError(
                        f"SQLite spool {str(self.path)!r}: this SQLite database is not an "
                        f"xpevents spool (tables: {', '.join(sorted(tables)) or 'none'}, "
                        f"user_version {version}); point the spool at another file"
                    )
                if version > SCHEMA_VERSION:
                    raise SpoolError(
                        f"SQLite spool {str(self.path)!r}: written by a newer xpevents "
                        f"(spool schema {version}, this version reads up to "
                        f"{SCHEMA_VERSION}); upgrade xpevents, or point this process at "
                        "another file"
                    )
                if version == 1:
                    self._migrate_v1(db)
                elif version != SCHEMA_VERSION:
                    raise SpoolError(
                        f"SQLite spool {str(self.path)!r}: unknown spool schema {version}; "
                        "move the file aside and start a new spool"
                    )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _create_schema(self, db: sqlite3.Connection) -> None:
        for statement in _SCHEMA_V2.split(";"):
            if statement.strip():
                db.execute(statement)
        self._write_meta(db, created=True)

    def _write_meta(self, db: sqlite3.Connection, *, created: bool) -> None:
        from xpevents._version import __version__

        now = repr(time.time())
        rows = [("format", FORMAT_NAME), ("schema_version", str(SCHEMA_VERSION))]
        rows.append(("created_at" if created else "migrated_at", now))
        rows.append(("written_by", f"xpevents {__version__}"))
        db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", rows)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _migrate_v1(self, db: sqlite3.Connection) -> None:
        """Version 1 -> 2: intern envelopes, keep ids, ``first_attempt_at`` and ``due_at``.

        Version 1 had ``queue(id, envelope, visitor, enqueued_at, attempts,
        next_attempt_at, lease_until)`` and ``dead(id, envelope, visitor, enqueued_at,
        attempts, reason, failed_at)``. It did not record the first attempt time; a
        record already attempted gets its ``enqueued_at`` (retry-age limits then count
        from enqueue, never later than the truth). Leases are kept.
        """
        logger.warning("SQLite spool %s: migrating schema 1 -> %d", self.path, SCHEMA_VERSION)
        db.create_function("xp_digest", 1, _digest, deterministic=True)
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
        self._write_meta(db, created=False)
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('migrated_from', '1')")

    # -- plumbing -------------------------------------------------------------------

    def _error(self, action: str, error: sqlite3.Error) -> SpoolError:
        name = getattr(error, "sqlite_errorname", "") or ""
        where = f"SQLite spool {str(self.path)!r}"
        if name.startswith("SQLITE_FULL") or "disk is full" in str(error):
            fix = "the disk is full: free space, or lower max_spool_bytes"
        elif name.startswith("SQLITE_BUSY") or "locked" in str(error):
            fix = (
                f"another process held the write lock for more than busy_timeout="
                f"{self.busy_timeout:g} s: look for a stuck process, or raise busy_timeout"
            )
        elif name.startswith("SQLITE_READONLY") or "readonly" in str(error):
            fix = "the file is read-only: fix its permissions (and its directory's)"
        elif name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or "not a database" in str(error):
            fix = (
                "the file is corrupt or not an SQLite database: move it aside (keep it for "
                "inspection) and start a new spool"
            )
        elif name.startswith("SQLITE_CANTOPEN"):
            fix = "the file cannot be opened: check the path and its permissions"
        elif name.startswith("SQLITE_IOERR"):
            fix = "an I/O error occurred: check the disk"
        else:
            fix = "see the SQLite error"
        return SpoolError(f"{where}: {action}: {error} ({name or 'sqlite error'}); {fix}")

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise SpoolError(f"SQLite spool {str(self.path)!r} is closed")
        if self._pid != os.getpid():
            # Forked: never touch the parent's connection; open our own.
            _abandoned.append(self._db)
            self._pid = os.getpid()
            self._db = self._open(create=True)
        return self._db

    @contextlib.contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One short ``BEGIN IMMEDIATE`` transaction under the process-local lock."""
        with self._lock:
            db = self._conn()
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except sqlite3.Error as error:
                self._rollback(db)
                raise self._error(action, error) from error
            except BaseException:
                self._rollback(db)
                raise

    @staticmethod
    def _rollback(db: sqlite3.Connection) -> None:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")

    def _read(self, action: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            db = self._conn()
            try:
                return db.execute(sql, params).fetchall()
            except sqlite3.Error as error:
                raise self._error(action, error) from error

    def _envelope_id(self, db: sqlite3.Connection, envelope: bytes) -> int:
        found = self._envelope_ids.get(envelope)
        if found is not None:
            return found
        digest = _digest(envelope)
        db.execute(
            "INSERT OR IGNORE INTO envelopes (digest, body) VALUES (?, ?)", (digest, envelope)
        )
        envelope_id = int(
            db.execute("SELECT id FROM envelopes WHERE digest = ?", (digest,)).fetchone()[0]
        )
        self._envelope_ids.put(envelope, envelope_id)
        self._envelope_bodies.put(envelope_id, envelope)
        return envelope_id

    def _envelope_body(self, db: sqlite3.Connection, envelope_id: int) -> bytes:
        body = self._envelope_bodies.get(envelope_id)
        if body is None:
            row = db.execute("SELECT body FROM envelopes WHERE id = ?", (envelope_id,)).fetchone()
            body = bytes(row[0])
            self._envelope_bodies.put(envelope_id, body)
        return body

    # -- the Spool interface --------------------------------------------------------

    def append(self, entries: Sequence[tuple[bytes, bytes]], *, now: float) -> None:
        """Store ``(envelope, visitor)`` pairs in one committed transaction.

        Raises:
            SpoolError: the write failed (disk full, lock timeout, I/O error...).
        """
        if not entries:
            return
        with self._write("append") as db:
            rows = []
            total = 0
            last_envelope: bytes | None = None
            envelope_id = 0
            for envelope, visitor in entries:
                if envelope is not last_envelope:
                    envelope_id = self._envelope_id(db, envelope)
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
            self._enforce_bounds(db, depth, nbytes, now)

    def _enforce_bounds(self, db: sqlite3.Connection, depth: int, nbytes: int, now: float) -> None:
        if depth > self.max_spool_events:
            self._evict_oldest(db, "max_spool_events", count=depth - self.max_spool_events)
        if nbytes > self.max_spool_bytes:
            self._evict_oldest(db, "max_spool_bytes", nbytes=nbytes - self.max_spool_bytes)
        if now - self._last_age_check >= _AGE_CHECK_EVERY:
            self._last_age_check = now
            self._evict_old(db, now - self.max_event_age)

    def _evict_oldest(
        self, db: sqlite3.Connection, reason: str, *, count: int = 0, nbytes: int = 0
    ) -> None:
        evicted = freed = 0
        while (count and evicted < count) or (nbytes and freed < nbytes):
            limit = min(_EVICT_CHUNK, count - evicted) if count else _EVICT_CHUNK
            rows = db.execute(
                "SELECT id, size FROM records ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
            if not rows:
                break
            chosen = []
            for record_id, size in rows:
                if nbytes and not count and freed >= nbytes:
                    break
                chosen.append(record_id)
                freed += size
                evicted += 1
            self._delete_records(db, chosen)
        self._count_eviction(db, reason, evicted)

    def _evict_old(self, db: sqlite3.Connection, cutoff: float) -> None:
        evicted = 0
        while True:
            rows = db.execute(
                "SELECT id, enqueued_at FROM records ORDER BY id LIMIT ?", (_EVICT_CHUNK,)
            ).fetchall()
            chosen = [record_id for record_id, enqueued_at in rows if enqueued_at < cutoff]
            if chosen:
                self._delete_records(db, chosen)
                evicted += len(chosen)
            if len(chosen) < _EVICT_CHUNK:
                break
        self._count_eviction(db, "max_event_age", evicted)

    def _delete_records(self, db: sqlite3.Connection, ids: Sequence[int | str]) -> int:
        sizes = db.execute(
            "DELETE FROM records WHERE id IN (SELECT value FROM json_each(?)) RETURNING size",
            (_ids_json(ids),),
        ).fetchall()
        if sizes:
            db.execute(
                "UPDATE totals SET depth = depth - ?, bytes = bytes - ? WHERE id = 1",
                (len(sizes), sum(row[0] for row in sizes)),
            )
        return len(sizes)

    def _count_eviction(self, db: sqlite3.Connection, reason: str, count: int) -> None:
        if not count:
            return
        db.execute(
            "INSERT INTO evictions (reason, count) VALUES (?, ?) "
            "ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count",
            (reason, count),
        )
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
        with self._write("claim") as db:
            first = db.execute(
                "SELECT envelope_id FROM records WHERE due_at <= ? ORDER BY due_at, id LIMIT 1",
                (now,),
            ).fetchone()
            if first is None:
                return []
            envelope_id = int(first[0])
            rows = db.execute(
                "SELECT id, visitor, size, enqueued_at, attempts, first_attempt_at FROM records "
                "WHERE envelope_id = ? AND due_at <= ? ORDER BY due_at, id LIMIT ?",
                (envelope_id, now, max_records),
            ).fetchall()
            envelope = self._envelope_body(db, envelope_id)
            records: list[SpoolRecord] = []
            total = 0
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
            db.execute(
                "UPDATE records SET due_at = ?, leased = 1 "
                "WHERE id IN (SELECT value FROM json_each(?))",
                (now + lease, _ids_json([r.id for r in records])),
            )
            return records

    def ack(self, ids: Sequence[int | str]) -> None:
        """Delete delivered records (unknown ids are ignored)."""
        if not ids:
            return
        with self._write("ack") as db:
            self._delete_records(db, ids)

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
        with self._write("retry") as db:
            db.execute(
                "UPDATE records SET attempts = ?, first_attempt_at = ?, due_at = ?, leased = 0 "
                "WHERE id IN (SELECT value FROM json_each(?))",
                (attempts, first_attempt_at, next_attempt_at, _ids_json(ids)),
            )

    def dead_letter(self, ids: Sequence[int | str], *, reason: str, now: float) -> None:
        """Move the records to ``dead_letters`` with ``reason``."""
        if not ids:
            return
        with self._write("dead_letter") as db:
            ids_json = _ids_json(ids)
            moved = db.execute(
                "INSERT INTO dead_letters (envelope_id, visitor, size, enqueued_at, attempts, "
                "first_attempt_at, reason, failed_at) "
                "SELECT envelope_id, visitor, size, enqueued_at, attempts, first_attempt_at, "
                "?, ? FROM records WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id",
                (reason, now, ids_json),
            ).rowcount
            self._delete_records(db, ids)
            self._count_dead(db, {reason: moved})
            (dead,) = db.execute("SELECT dead FROM totals WHERE id = 1").fetchone()
            if dead > self.max_dead_letters:
                rows = db.execute(
                    "DELETE FROM dead_letters WHERE id IN "
                    "(SELECT id FROM dead_letters ORDER BY id LIMIT ?) RETURNING reason",
                    (dead - self.max_dead_letters,),
                ).fetchall()
                self._count_dead(db, self._by_reason(rows), sign=-1)
                self._count_eviction(db, "max_dead_letters", len(rows))

    @staticmethod
    def _by_reason(rows: Sequence[Any]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in rows:
            counts[row[0]] = counts.get(row[0], 0) + 1
        return counts

    @staticmethod
    def _count_dead(db: sqlite3.Connection, counts: dict[str, int], *, sign: int = 1) -> None:
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

    def next_due_at(self, *, now: float) -> float | None:
        """Earliest ``due_at`` (``now`` if something is due), or ``None`` when empty."""
        rows = self._read("next_due_at", "SELECT min(due_at) FROM records")
        due = rows[0][0]
        if due is None:
            return None
        return now if due <= now else float(due)

    def stats(self, *, now: float) -> SpoolStats:
        """Depth and bytes (maintained counters), leases, oldest record, dead letters."""
        with self._lock:
            db = self._conn()
            try:
                db.execute("BEGIN")
                depth, nbytes = db.execute(
                    "SELECT depth, bytes FROM totals WHERE id = 1"
                ).fetchone()
                leased = db.execute(
                    "SELECT count(*) FROM records WHERE due_at > ? AND leased = 1", (now,)
                ).fetchone()[0]
                oldest = db.execute(
                    "SELECT enqueued_at FROM records ORDER BY id LIMIT 1"
                ).fetchone()
                dead = dict(db.execute("SELECT reason, count FROM dead_reasons").fetchall())
                evicted = dict(db.execute("SELECT reason, count FROM evictions").fetchall())
                db.execute("COMMIT")
            except sqlite3.Error as error:
                self._rollback(db)
                raise self._error("stats", error) from error
        return SpoolStats(
            depth=int(depth),
            bytes=int(nbytes),
            leased=int(leased),
            oldest_enqueued_at=None if oldest is None else float(oldest[0]),
            dead_letters=MappingProxyType(dead),
            evicted=MappingProxyType(evicted),
        )

    def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters."""
        rows = self._read(
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
            with self._write("replay_dead_letters") as db:
                ids = [
                    row[0]
                    for row in db.execute(
                        "SELECT id FROM dead_letters WHERE (?1 IS NULL OR reason = ?1) "
                        "ORDER BY id LIMIT ?2",
                        (reason, _MOVE_CHUNK),
                    )
                ]
                if not ids:
                    break
                ids_json = _ids_json(ids)
                moved = db.execute(
                    "INSERT INTO records (envelope_id, visitor, size, enqueued_at, attempts, "
                    "first_attempt_at, due_at, leased) "
                    "SELECT envelope_id, visitor, size, ?1, 0, NULL, ?1, 0 FROM dead_letters "
                    "WHERE id IN (SELECT value FROM json_each(?2)) ORDER BY id",
                    (now, ids_json),
                ).rowcount
                rows = db.execute(
                    "DELETE FROM dead_letters WHERE id IN (SELECT value FROM json_each(?)) "
                    "RETURNING size, reason",
                    (ids_json,),
                ).fetchall()
                self._count_dead(db, self._by_reason([(r[1],) for r in rows]), sign=-1)
                depth, nbytes = db.execute(
                    "UPDATE totals SET depth = depth + ?, bytes = bytes + ? "
                    "WHERE id = 1 RETURNING depth, bytes",
                    (moved, sum(row[0] for row in rows)),
                ).fetchone()
                self._enforce_bounds(db, depth, nbytes, now)
                replayed += moved
        if replayed:
            logger.info("SQLite spool %s: replayed %d dead letter(s)", self.path, replayed)
        return replayed

    def purge_dead_letters(self, *, reason: str | None = None) -> int:
        """Delete dead letters (of ``reason``, or all), in chunks; returns how many."""
        purged = 0
        while True:
            with self._write("purge_dead_letters") as db:
                rows = db.execute(
                    "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters "
                    "WHERE (?1 IS NULL OR reason = ?1) ORDER BY id LIMIT ?2) RETURNING reason",
                    (reason, _MOVE_CHUNK),
                ).fetchall()
                count = len(rows)
                self._count_dead(db, self._by_reason(rows), sign=-1)
            purged += count
            if count < _MOVE_CHUNK:
                break
        if purged:
            logger.info("SQLite spool %s: purged %d dead letter(s)", self.path, purged)
        return purged

    # -- extras beyond the Spool protocol --------------------------------------------

    def make_due(self, *, now: float) -> int:
        """Make records waiting for a retry due ``now`` (clears backoff, keeps leases).

        Returns how many records were rescheduled (``xpevents spool replay URL``).
        """
        with self._write("make_due") as db:
            return int(
                db.execute(
                    "UPDATE records SET due_at = ? WHERE leased = 0 AND due_at > ?", (now, now)
                ).rowcount
            )

    def schema_version(self) -> int:
        """The schema version of the open file (``PRAGMA user_version``)."""
        return int(self._read("schema_version", "PRAGMA user_version")[0][0])

    def _reset_after_fork(self) -> None:
        # The parent may have held the lock at fork time; the child gets a free one.
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the connection (never the one inherited from a parent). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._pid == os.getpid():
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
        forking.untrack(self)

    def __enter__(self) -> SqliteSpool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteSpool({str(self.path)!r}, sync={self.sync!r})"
