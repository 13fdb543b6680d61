"""The SQLite spool's file: opening or creating it, this process's transactions on it,
and what a failure means (its URL: :mod:`.url`).

Files are created with mode 0600; SQLite gives the ``-wal`` and ``-shm`` files the mode
of the database file. Every failure to open or use the file becomes a
:class:`~xpevents.errors.SpoolError` whose message names the path and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from xpevents._internal.paths import missing_directory
from xpevents.errors import SpoolError
from xpevents.spool.connection import ProcessConnection
from xpevents.spool.sqlite import schema, space
from xpevents.spool.sqlite.identity import FileIdentity

__all__ = ["Database", "error", "open_database"]

logger = logging.getLogger("xpevents.spool.sqlite")

# Connections inherited across fork(): kept referenced forever so that garbage
# collection never closes them in the child (closing could checkpoint or delete the
# parent's WAL).
_abandoned: list[sqlite3.Connection] = []


class Database:
    """This process's connection to the spool file, used one transaction at a time.

    Every use holds a process-local lock, so threads never interleave statements on
    the one connection; a forked child opens its own connection on first use.

    Raises:
        SpoolError: the file cannot be opened (see :func:`open_database`).
    """

    def __init__(
        self, path: Path, create: bool, busy_timeout: float, sync: str, checkpoint_pages: int
    ) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.sync = sync
        self.checkpoint_pages = checkpoint_pages
        self.identity = FileIdentity(path)
        self._unstick = space.Unstick()
        self._connection = ProcessConnection(
            self._open(create=create),
            name=f"SQLite spool {str(path)!r}",
            reopen=self._reopen,
            close=self._close_quietly,
        )

    def _open(self, *, create: bool) -> sqlite3.Connection:
        db = open_database(
            self.path,
            create=create,
            busy_timeout=self.busy_timeout,
            sync=self.sync,
            checkpoint_pages=self.checkpoint_pages,
        )
        self.identity.renew()
        return db

    def _reopen(self, inherited: sqlite3.Connection) -> sqlite3.Connection:
        # Forked: never touch the parent's connection; open our own.
        _abandoned.append(inherited)
        return self._open(create=True)

    @staticmethod
    def _close_quietly(db: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.Error):
            db.close()

    def write(
        self, action: str, *, guarded: bool = False
    ) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One short ``BEGIN IMMEDIATE`` transaction (the write lock from the start).

        ``guarded``: before ``COMMIT``, check that the file is still the one at the
        path (:mod:`.identity`); if not, roll back and raise :class:`SpoolError`.
        """
        return self._transaction(action, "BEGIN IMMEDIATE", guarded=guarded)

    @contextlib.contextmanager
    def try_write(
        self, action: str, *, guarded: bool = False
    ) -> Iterator[sqlite3.Connection | None]:
        """:meth:`write` without waiting: ``None`` (nothing begun) while another thread of
        this process or another connection holds the write lock.

        The connection's busy timeout is 0 for the ``BEGIN IMMEDIATE`` only (SQLite's
        busy handler sleeps 1, 2, 5... ms); the rest of the transaction is :meth:`write`'s.
        """
        lock = self._connection.lock
        if not lock.acquire(blocking=False):
            yield None
            return
        try:
            db = self._connection.get()
            if not self._begin_now(db, action):
                yield None
                return
            with self._begun(db, action, guarded=guarded):
                yield db
        finally:
            lock.release()

    def _begin_now(self, db: sqlite3.Connection, action: str) -> bool:
        db.execute("PRAGMA busy_timeout = 0")
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as failure:
            if failure.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                self._unstick.after(db, failure, self.path)
                raise self.error(action, failure) from failure
            return False
        finally:
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        return True

    def snapshot(self, action: str) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One read transaction: several reads that see the same state."""
        return self._transaction(action, "BEGIN")

    @contextlib.contextmanager
    def _transaction(
        self, action: str, begin: str, *, guarded: bool = False
    ) -> Iterator[sqlite3.Connection]:
        with self._connection.lock:
            db = self._connection.get()
            try:
                db.execute(begin)
            except sqlite3.Error as failure:
                self._rollback(db)
                self._unstick.after(db, failure, self.path)
                raise self.error(action, failure) from failure
            with self._begun(db, action, guarded=guarded):
                yield db

    @contextlib.contextmanager
    def _begun(self, db: sqlite3.Connection, action: str, *, guarded: bool) -> Iterator[None]:
        """The rest of a transaction begun on ``db``: commit, or roll back and raise."""
        try:
            yield
            problem = self.identity.check() if guarded else None
            if problem is not None:
                raise SpoolError(problem)
            db.execute("COMMIT")
        except sqlite3.Error as failure:
            self._rollback(db)
            self._unstick.after(db, failure, self.path)
            raise self.error(action, failure) from failure
        except BaseException:
            self._rollback(db)
            raise

    @staticmethod
    def _rollback(db: sqlite3.Connection) -> None:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")

    def read(self, action: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """The rows of one statement, outside any transaction."""
        with self._connection.lock:
            db = self._connection.get()
            try:
                return db.execute(sql, params).fetchall()
            except sqlite3.Error as failure:
                raise self.error(action, failure) from failure

    def error(self, action: str, failure: sqlite3.Error) -> SpoolError:
        """The :class:`SpoolError` for ``failure`` during ``action``."""
        return error(self.path, action, failure, busy_timeout=self.busy_timeout)

    def close(self) -> None:
        """Close the connection (never the one inherited from a parent). Idempotent."""
        self._connection.close()


def open_database(
    path: Path, *, create: bool, busy_timeout: float, sync: str, checkpoint_pages: int
) -> sqlite3.Connection:
    """Open (or create) the spool file in WAL mode, its schema ready (migrated if old).

    Raises:
        SpoolError: missing directory, permission denied, read-only file system, disk
            full, corrupt or foreign file, or a spool written by a newer xpevents.
    """
    directory = path.parent
    if (problem := missing_directory(path)) is not None:
        raise SpoolError(f"SQLite spool {str(path)!r}: {problem}")
    if not path.exists():
        if not create:
            raise SpoolError(f"SQLite spool {str(path)!r}: no such file")
        _create_file(path)
    elif not path.is_file():
        raise SpoolError(f"SQLite spool {str(path)!r}: exists but is not a regular file")
    if not os.access(path, os.R_OK | os.W_OK) or not os.access(directory, os.W_OK | os.X_OK):
        raise SpoolError(
            f"SQLite spool {str(path)!r}: not writable (the file and its directory must "
            "be writable: SQLite creates -wal and -shm files next to it); fix the "
            "permissions or choose another path"
        )
    if create:  # a spool that will take writes (inspection tools may look anyway)
        space.check_free_space(path)
        space.make_reserve(path)
    try:
        db = sqlite3.connect(
            str(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as failure:
        raise error(path, "cannot open", failure, busy_timeout=busy_timeout) from failure
    try:
        _configure(db, path, busy_timeout=busy_timeout, sync=sync)
        db.execute(f"PRAGMA wal_autocheckpoint = {int(checkpoint_pages)}")
        space.truncate_wal(db)  # what earlier runs left in the WAL, folded in
        schema.prepare(db, path)
    except SpoolError:
        db.close()
        raise
    except sqlite3.Error as failure:
        db.close()
        raise error(path, "cannot open", failure, busy_timeout=busy_timeout) from failure
    _warn_if_loose_mode(path)
    return db


def _create_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return  # another process created it first
    except PermissionError as failure:
        raise SpoolError(
            f"SQLite spool {str(path)!r}: cannot create the file: permission denied; "
            "choose a writable path or fix the directory's permissions"
        ) from failure
    except OSError as failure:
        if failure.errno == errno.EROFS:
            raise SpoolError(
                f"SQLite spool {str(path)!r}: the file system is read-only; choose a "
                "path on a writable file system"
            ) from failure
        if failure.errno == errno.ENOSPC:
            raise SpoolError(
                f"SQLite spool {str(path)!r}: the disk is full; free space or choose another path"
            ) from failure
        raise SpoolError(f"SQLite spool {str(path)!r}: cannot create: {failure}") from failure
    os.fchmod(fd, 0o600)  # the umask may have removed bits, never added any
    os.close(fd)


def _warn_if_loose_mode(path: Path) -> None:
    with contextlib.suppress(OSError):
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            logger.warning(
                "SQLite spool %s has mode %o: other users can read queued events; "
                "run chmod 600 on it (and its -wal/-shm files)",
                path,
                mode,
            )


def _configure(db: sqlite3.Connection, path: Path, *, busy_timeout: float, sync: str) -> None:
    db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    # The first statement that reads the file: a foreign or corrupt file fails here.
    mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise SpoolError(
            f"SQLite spool {str(path)!r}: cannot switch to WAL mode (got {mode!r}); "
            "the file system may not support shared memory (network file systems do "
            "not): put the spool on a local disk"
        )
    db.execute(f"PRAGMA synchronous = {'FULL' if sync == 'full' else 'NORMAL'}")
    db.execute(f"PRAGMA journal_size_limit = {space.WAL_LIMIT_BYTES}")
    db.execute("PRAGMA foreign_keys = OFF")


def error(path: Path, action: str, failure: sqlite3.Error, *, busy_timeout: float) -> SpoolError:
    """The :class:`SpoolError` for ``failure``, with what to do about it."""
    name = getattr(failure, "sqlite_errorname", "") or ""
    return SpoolError(
        f"SQLite spool {str(path)!r}: {action}: {failure} ({name or 'sqlite error'}); "
        f"{_fix(name, str(failure), busy_timeout)}"
    )


def _fix(name: str, text: str, busy_timeout: float) -> str:
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return "the disk is full: free space, or lower max_spool_bytes"
    if name.startswith("SQLITE_BUSY") or "locked" in text:
        return (
            f"another process held the write lock for more than busy_timeout="
            f"{busy_timeout:g} s: look for a stuck process, or raise busy_timeout"
        )
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return "the file is read-only: fix its permissions (and its directory's)"
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or "not a database" in text:
        return (
            "the file is corrupt or not an SQLite database: move it aside (keep it for "
            "inspection) and start a new spool"
        )
    if name.startswith("SQLITE_CANTOPEN"):
        return "the file cannot be opened: check the path and its permissions"
    if name.startswith("SQLITE_IOERR"):
        return "an I/O error occurred: check the disk"
    return "see the SQLite error"
