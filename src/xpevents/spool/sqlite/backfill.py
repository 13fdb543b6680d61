"""Copy a SQLite spool's write-ahead log into its database file from a thread of its own.

Every commit appends pages to the ``-wal`` file; SQLite copies them back into the
database file (a checkpoint) in the commit that brings the log to ``checkpoint_pages``,
which then returns only after copying all of them and two fsyncs. In the relay that
commit is a request's: a ~500-page checkpoint held its 204 for 1.5-2.5 ms, and with
about 1% of commits paying it, wrk's p99 at 10 clients was set by them (issue 16).

:class:`WalBackfill` runs ``PRAGMA wal_checkpoint(PASSIVE)`` on a connection of its own
every few milliseconds in another process (a :class:`~xpevents.relay.forward.Forwarder`:
the relay's forwarding child, ``xpevents forward``). A passive
checkpoint never takes the write lock and never waits: it copies what no reader still
needs while commits go on. It cannot restart the log itself (the log starts again from
its first page only when a writer begins after a checkpoint that left nothing behind,
and commits never stop long enough), so the writer's own checkpoint still runs at
``checkpoint_pages``; it then finds almost everything copied already, and only its
fsyncs and the last few pages are left in the commit.

A failure (disk full, I/O error, a file gone) is counted and logged at most every 10 s,
never raised: the writer's own checkpoints carry on as before.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from xpevents._internal.ratelimit import LogEvery
from xpevents._internal.validate import positive_number
from xpevents.errors import ConfigError

__all__ = ["BACKFILL_EVERY", "BACKFILL_IDLE_EVERY", "BackfillStats", "WalBackfill"]

logger = logging.getLogger("xpevents.spool.sqlite")

BACKFILL_EVERY: Final = 0.005
"""Seconds between passive checkpoints while the log grows. The relay at 10 wrk clients
paced to 4,800-6,900 req/s: p99 1.8-2.2 ms with 5 ms, 2.5-2.8 ms without; at wrk's full
rate 2.6-3.0 against 2.9-3.4 ms; 2 ms cost 8% of the requests/s (issue 16)."""
BACKFILL_IDLE_EVERY: Final = 0.2
"""Seconds between checkpoints at most: while the log does not change the wait doubles
up to this, so an idle spool costs five wake-ups a second."""


@dataclass(frozen=True)
class BackfillStats:
    """What a :class:`WalBackfill` did: passive checkpoints run, and failures."""

    checkpoints: int
    failures: int


class WalBackfill:
    """Passive checkpoints of the SQLite file at ``path`` from a daemon thread.

    Args:
        path: the spool's database file (``SqliteSpool.path``).
        sync: the spool's ``sync`` (``"normal"`` or ``"full"``): the checkpoint's fsyncs
            are SQLite's for that setting, as in the writer's own checkpoints.
        every: seconds between checkpoints while there is something to copy
            (default :data:`BACKFILL_EVERY`).
        idle_every: the longest wait, reached by doubling while the log does not
            change (default :data:`BACKFILL_IDLE_EVERY`).

    Call :meth:`start`, then :meth:`close`. Raises :class:`~xpevents.errors.ConfigError`
    for an unknown ``sync`` or a non-positive interval; never raises after that.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        sync: str = "normal",
        every: float = BACKFILL_EVERY,
        idle_every: float = BACKFILL_IDLE_EVERY,
    ) -> None:
        if sync not in ("normal", "full"):
            raise ConfigError(f"WalBackfill(sync={sync!r}): expected 'normal' or 'full'")
        positive_number("every", every, owner="WalBackfill")
        positive_number("idle_every", idle_every, owner="WalBackfill")
        self.path = Path(path)
        self.sync = sync.upper()
        self.every = float(every)
        self.idle_every = max(float(idle_every), self.every)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._checkpoints = self._failures = 0
        self._log = LogEvery(10.0)

    def start(self) -> WalBackfill:
        """Start the thread (once); returns ``self``."""
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(
                target=self._run, name="xpevents-wal-backfill", daemon=True
            )
            self._thread.start()
        return self

    def stats(self) -> BackfillStats:
        """Checkpoints run and failures so far."""
        return BackfillStats(self._checkpoints, self._failures)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread and close its connection. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        db = self._connect()
        if db is None:
            return
        try:
            wait = self.every
            last: tuple[int, int] | None = None
            while not self._stop.wait(wait):
                try:
                    busy, log, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as failure:
                    self._failed(failure)
                    wait = self.idle_every
                    continue
                self._checkpoints += 1
                if busy or (log, copied) != last:  # the log moved: keep up with it
                    wait = self.every
                else:
                    wait = min(wait * 2, self.idle_every)
                last = (log, copied)
        finally:
            db.close()

    def _connect(self) -> sqlite3.Connection | None:
        try:
            # mode=rw: a file that is gone is a failure, never a new empty database
            uri = f"{self.path.absolute().as_uri()}?mode=rw"
            db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 0")
            db.execute(f"PRAGMA synchronous = {self.sync}")
        except sqlite3.Error as failure:
            self._failed(failure)
            return None
        return db

    def _failed(self, failure: sqlite3.Error) -> None:
        self._failures += 1
        if self._log.tally("failure", 1) is not None:
            logger.warning(
                "SQLite spool %s: background checkpoint failed (%s); the writers' own "
                "checkpoints go on",
                self.path,
                failure,
            )
