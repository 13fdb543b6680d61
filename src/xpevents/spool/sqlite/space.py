"""Disk space: what the SQLite spool needs to start, and how it gets unstuck.

In WAL mode every commit appends to the ``-wal`` file, and only a checkpoint copies
those pages into the database and lets the WAL be reused. On a volume that fills up,
the WAL can hold the only copy of the data and all the free space; when space comes
back, nothing shrinks it by itself. So:

* at open the WAL left by earlier runs is checkpointed and truncated
  (``wal_checkpoint(TRUNCATE)``), and ``journal_size_limit`` keeps it truncated to
  :data:`WAL_LIMIT_BYTES` after each checkpoint;
* a spool that takes writes keeps a *reserve* next to its file (``<spool>-reserve``,
  :data:`RESERVE_BYTES`, written at open): when a write fails with SQLITE_FULL, the
  reserve is released (one WARNING) so that claims, acks and checkpoints still have
  room, and the spool drains instead of staying stuck on a volume its WAL filled; it is
  written again at the next open;
* after a write failed with SQLITE_FULL, the spool tries the same checkpoint (at most
  every :data:`RETRY_EVERY` seconds), so it recovers in place as soon as space returns;
* a spool refuses to open with less than :data:`MIN_FREE_BYTES` free on its volume,
  with a message that names that minimum: below it SQLite cannot even checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Final

from xpevents.errors import SpoolError

__all__ = [
    "MIN_FREE_BYTES",
    "RESERVE_BYTES",
    "WAL_LIMIT_BYTES",
    "Unstick",
    "check_free_space",
    "make_reserve",
    "truncate_wal",
]

logger = logging.getLogger("xpevents.spool.sqlite")

MIN_FREE_BYTES: Final = 256 * 1024
"""Free bytes on the spool's volume below which the spool refuses to open."""
WAL_LIMIT_BYTES: Final = 4 * 1024 * 1024
"""``journal_size_limit``: the WAL is truncated to this size after a checkpoint."""
RETRY_EVERY: Final = 1.0
RESERVE_BYTES: Final = 256 * 1024
"""Bytes set aside at open and given back to SQLite when the disk fills up."""


def reserve_path(path: Path) -> Path:
    """The reserve file of the spool at ``path``."""
    return Path(f"{path}-reserve")


def make_reserve(path: Path) -> None:
    """Write the reserve unless it is there (best effort: a full disk just has none)."""
    reserve = reserve_path(path)
    if reserve.exists():
        return
    try:
        fd = os.open(reserve, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return
    try:
        os.write(fd, bytes(RESERVE_BYTES))  # written, not sparse: the blocks are ours
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            reserve.unlink()
        return
    os.close(fd)


def free_bytes(directory: Path) -> int | None:
    """Bytes available to this user on the volume of ``directory`` (None: unknown)."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def check_free_space(path: Path) -> None:
    """Raise :class:`SpoolError` when the spool's volume has less than the minimum free."""
    directory = path.parent if str(path.parent) else Path(".")
    free = free_bytes(directory)
    if free is not None and reserve_path(path).exists():
        free += RESERVE_BYTES  # ours to give back
    if free is not None and free < MIN_FREE_BYTES + RESERVE_BYTES:
        raise SpoolError(
            f"SQLite spool {str(path)!r}: only {free // 1024} KiB free on its volume; it "
            f"needs at least {(MIN_FREE_BYTES + RESERVE_BYTES) // 1024} KiB free to start (room to "
            "checkpoint its write-ahead log): free space, or put the spool on a larger "
            "volume"
        )


def truncate_wal(db: sqlite3.Connection) -> bool:
    """Checkpoint the WAL into the database and truncate it; False if it could not."""
    try:
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.Error:
        return False
    return not busy


class Unstick:
    """After SQLITE_FULL: try to give the WAL's space back, at most every second."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = 0.0

    def after(self, db: sqlite3.Connection, failure: sqlite3.Error, path: Path) -> None:
        """Called with the connection (no transaction open) after ``failure``."""
        name = getattr(failure, "sqlite_errorname", "") or ""
        if not name.startswith("SQLITE_FULL") and "disk is full" not in str(failure):
            return
        now = time.monotonic()
        if now - self._last < RETRY_EVERY:
            return
        self._last = now
        reserve = reserve_path(path)
        with contextlib.suppress(OSError):
            reserve.unlink()
            logger.warning(
                "SQLite spool %s: the disk is full; released the spool's %d KiB reserve so "
                "that deliveries can drain it (written again at the next start)",
                path,
                RESERVE_BYTES // 1024,
            )
        with contextlib.suppress(sqlite3.Error):
            if truncate_wal(db):
                logger.info("SQLite spool %s: disk full; write-ahead log checkpointed", path)
