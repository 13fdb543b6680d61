"""Profiles in one SQLite file (WAL), shared by the worker processes of one machine.

One row per (user, experiment): a save merges, so two processes that bucket one user
into two experiments at the same time both keep their entry. Each thread (and each
process after ``fork``) opens its own connection. A lock held longer than
``busy_timeout`` is a timeout: counted, and the decision goes on without stickiness.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Final

from xpevents._internal.validate import positive_seconds
from xpevents.profiles.base import BucketMap, ProfileStore

__all__ = ["SQLiteProfileStore"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS profiles (
    user_id TEXT NOT NULL,
    experiment_id TEXT NOT NULL,
    variation_id TEXT NOT NULL,
    saved_at REAL NOT NULL,
    PRIMARY KEY (user_id, experiment_id)
) WITHOUT ROWID
"""
_CHUNK: Final = 500  # user ids per SELECT (below SQLite's variable limit)


class _Timeout(TimeoutError):
    """The database stayed locked longer than ``busy_timeout``."""


class SQLiteProfileStore(ProfileStore):
    """A user profile service in a SQLite file.

    Args:
        path: the database file (created with its directory if missing).
        busy_timeout: how long a call waits for another process's write lock, in
            seconds. Default 0.05; past it the call counts a timeout and the decision
            goes on without the profile.

    Thread-safe and fork-safe (a connection per thread and process).
    """

    name = "SQLite profiles"

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 0.05) -> None:
        super().__init__()
        self.path = Path(path)
        self.busy_timeout = positive_seconds(
            "busy_timeout", busy_timeout, owner="SQLiteProfileStore"
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as conn:  # create the schema now: errors belong here
            conn.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _conn(self) -> sqlite3.Connection:
        local = self._local
        pid = os.getpid()
        if getattr(local, "pid", None) != pid:
            local.conn = self._connect()
            local.pid = pid
        conn: sqlite3.Connection = local.conn
        return conn

    def _fetch(self, user_ids: list[str]) -> dict[str, BucketMap]:
        found: dict[str, BucketMap] = {}
        conn = self._conn()
        for start in range(0, len(user_ids), _CHUNK):
            chunk = user_ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._run(
                conn,
                "SELECT user_id, experiment_id, variation_id FROM profiles "
                f"WHERE user_id IN ({marks})",
                chunk,
            )
            for user_id, experiment_id, variation_id in rows:
                found.setdefault(user_id, {})[experiment_id] = variation_id
        return found

    def _store(self, batch: dict[str, BucketMap]) -> None:
        now = time.time()
        rows = [(u, e, v, now) for u, entries in batch.items() for e, v in entries.items()]
        if not rows:
            return
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO profiles (user_id, experiment_id, variation_id, saved_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (user_id, experiment_id) DO UPDATE SET "
                "variation_id = excluded.variation_id, saved_at = excluded.saved_at",
                rows,
            )
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._timeout_or(exc) from None

    def _run(self, conn: sqlite3.Connection, sql: str, args: list[str]) -> list[tuple[str, ...]]:
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            raise self._timeout_or(exc) from None

    @staticmethod
    def _timeout_or(exc: sqlite3.OperationalError) -> Exception:
        if "locked" in str(exc) or "busy" in str(exc):
            return _Timeout(str(exc))
        return exc

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            self._local.pid = None
