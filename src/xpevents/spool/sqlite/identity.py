"""Is the spool file this process writes to still the one at its path?

Delete (or replace) a SQLite file under a running process and SQLite carries on
writing to the unlinked inode: every commit succeeds, and all of it is gone at the
next start. :class:`FileIdentity` remembers the device and inode of the file when it
was opened and compares them with the path's now; the spool checks it inside each
write transaction that adds visitors, just before ``COMMIT`` (one ``stat``, about a
microsecond), so nothing is acknowledged into a file that no longer has a name.

Once the file is found gone, that is the spool's :attr:`problem` for the rest of the
process (a new file at the path is a different inode): writes are refused with it,
and it is logged once at ERROR. Reads, claims and acks go on: the visitors already
accepted are still in the open file and are delivered while the process runs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["FileIdentity"]

logger = logging.getLogger("xpevents.spool.sqlite")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class FileIdentity:
    """The (device, inode) of the spool file as opened, and what became of its path."""

    __slots__ = ("expected", "path", "problem")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.expected = _identity(path)
        self.problem: str | None = None

    def renew(self) -> None:
        """The file was (re)opened: remember what the path holds now."""
        self.expected = _identity(self.path)

    def check(self) -> str | None:
        """``None`` while the path is the file opened; else the problem (logged once)."""
        if self.problem is not None:
            return self.problem
        try:
            now = _identity(self.path)
        except OSError:
            return None  # cannot tell (a transient stat error): never a false alarm
        if now == self.expected:
            return None
        what = "deleted" if now is None else "replaced by another file"
        self.problem = (
            f"SQLite spool {str(self.path)!r}: the file was {what} while this process had "
            "it open; visitors written now would be lost at the next start, so writes "
            "are refused. Restart the process to open a spool file at that path (the "
            "visitors already accepted are still delivered from the open file until then)"
        )
        logger.error("%s", self.problem)
        return self.problem
