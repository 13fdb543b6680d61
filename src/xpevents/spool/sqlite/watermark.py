"""The high-water mark of visitors accepted but not yet committed, and the losses it
reveals at the next open.

With ``durability="interval"`` (or while a failing store is bypassed), a
:class:`~xpevents.spool.front.SpoolFront` holds accepted visitors in memory until the
next group commit; a SIGKILL loses them, within the documented bound, and nothing
would say how many. :class:`Watermark` keeps two counters for one front in a 16-byte
memory-mapped side file next to the spool (``<spool>-accepted-<pid>-<token>``): the
visitors it accepted and the ones it dropped (already counted as drops). Writing them is
a store into shared memory, no system call; the page cache keeps them when the
process is killed. Each commit records the front's committed total in the spool's
``marks`` table, in the same transaction as the visitors.

At the next open, :func:`recover` reads the side file of every process that is gone:
accepted - dropped - committed is what the crash lost. It is counted as
``lost["interval_window"]`` in the spool's stats and logged once at WARNING; the side
file and its row are removed. A clean close removes them too.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import secrets
import sqlite3
import struct
from pathlib import Path

__all__ = ["LOST_PREFIX", "Mark", "Watermark", "recover", "split_counts"]

logger = logging.getLogger("xpevents.spool.sqlite")

LOST_PREFIX = "lost:"
"""Rows of the ``evictions`` table that count losses found after the fact."""
REASON = "interval_window"
_LAYOUT = struct.Struct("<qq")  # accepted, dropped
Mark = tuple[str, int]
"""``(token, committed)``: a front's committed total, written with each of its commits."""


def split_counts(counted: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """The ``evictions`` table's counts split into (evicted by the bounds, lost)."""
    evicted = {k: v for k, v in counted.items() if not k.startswith(LOST_PREFIX)}
    lost = {k[len(LOST_PREFIX) :]: v for k, v in counted.items() if k.startswith(LOST_PREFIX)}
    return evicted, lost


_MARKS = "CREATE TABLE IF NOT EXISTS marks (token TEXT PRIMARY KEY, committed INTEGER NOT NULL)"


def create_marks(db: sqlite3.Connection) -> None:
    """The ``marks`` table (a front's committed total), unless it exists."""
    db.execute(_MARKS)


def record_commit(db: sqlite3.Connection, token: str, committed: int) -> None:
    """In the commit's transaction: the front ``token`` has committed ``committed``."""
    db.execute(
        "INSERT INTO marks (token, committed) VALUES (?, ?) "
        "ON CONFLICT (token) DO UPDATE SET committed = excluded.committed",
        (token, committed),
    )


class Watermark:
    """One front's accepted/dropped counters in a memory-mapped side file."""

    def __init__(self, spool_path: Path) -> None:
        self.spool_path = spool_path
        self.committed = 0
        self._accepted = 0
        self._dropped = 0
        self._pid = 0
        self.token = ""
        self._file: Path | None = None
        self._map: mmap.mmap | None = None

    def _open(self) -> mmap.mmap | None:
        pid = os.getpid()
        if self._pid == pid:
            return self._map  # None: this process could not create its side file
        # First use, or a forked child: a side file of our own, counted from zero.
        self._pid, self.token = pid, secrets.token_hex(6)
        self._accepted = self._dropped = self.committed = 0
        self._map = None
        path = Path(f"{self.spool_path}-accepted-{pid}-{self.token}")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                # Written, not truncated: the block is allocated now (ENOSPC here), so a
                # store into the map can never fault on a full disk (SIGBUS).
                if os.write(fd, bytes(_LAYOUT.size)) != _LAYOUT.size:
                    raise OSError("short write")
                self._map = mmap.mmap(fd, _LAYOUT.size)
            finally:
                os.close(fd)
        except OSError as error:
            logger.warning("spool %s: no loss accounting for this process (%s)", path, error)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        self._file = path
        return self._map

    def _write(self) -> None:
        mapped = self._open()
        if mapped is not None:
            _LAYOUT.pack_into(mapped, 0, self._accepted, self._dropped)

    def accepted(self, count: int) -> None:
        """``count`` visitors were accepted into memory (call with the front's lock)."""
        self._open()
        self._accepted += count
        self._write()

    def dropped(self, count: int) -> None:
        """``count`` accepted visitors were dropped (counted as drops elsewhere)."""
        if self._map is not None:
            self._dropped += count
            self._write()

    def mark(self, count: int) -> Mark | None:
        """The ``marks`` row to write with a commit of ``count`` visitors."""
        if self._map is None or self._pid != os.getpid():
            return None
        return self.token, self.committed + count

    def close(self, *, settled: bool) -> None:
        """Remove the side file when everything accepted was committed or dropped."""
        if self._map is None or self._pid != os.getpid():
            return
        self._map.close()
        self._map = None
        if settled and self._file is not None:
            with contextlib.suppress(OSError):
                self._file.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> tuple[int, int] | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return _LAYOUT.unpack_from(data) if len(data) >= _LAYOUT.size else (0, 0)


def recover(db: sqlite3.Connection, spool_path: Path) -> int:
    """Count what dead processes accepted and never committed (in ``db``'s transaction).

    Returns the visitors found lost; their side files and rows are removed.
    """
    create_marks(db)
    total = 0
    for side in spool_path.parent.glob(f"{spool_path.name}-accepted-*-*"):
        rest = side.name[len(spool_path.name) + len("-accepted-") :]
        pid_text, _, token = rest.partition("-")
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        counts = _read(side)
        if counts is None:
            continue
        row = db.execute("SELECT committed FROM marks WHERE token = ?", (token,)).fetchone()
        committed = int(row[0]) if row else 0
        lost = max(0, counts[0] - counts[1] - committed)
        db.execute("DELETE FROM marks WHERE token = ?", (token,))
        with contextlib.suppress(OSError):
            side.unlink()
        if lost:
            total += lost
            db.execute(
                "INSERT INTO evictions (reason, count) VALUES (?, ?) "
                "ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count",
                (LOST_PREFIX + REASON, lost),
            )
    if total:
        logger.warning(
            "SQLite spool %s: %d visitor(s) accepted by a process that was killed were never "
            "committed (the group-commit window of durability='interval', or a store that "
            "was failing): they are LOST, counted as lost['interval_window']",
            spool_path,
            total,
        )
    return total
