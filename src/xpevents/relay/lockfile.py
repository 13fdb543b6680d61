"""Taking turns at a lock file (``flock``): the ingest workers' commits (``--workers N``).

A blocking ``flock`` has no timeout, so :func:`lock` tries with growing sleeps, and
:func:`try_lock` does not wait at all (a commit in the event loop tries and comes back).
"""

from __future__ import annotations

import fcntl
import time

__all__ = ["lock", "try_lock"]


def try_lock(fd: int) -> bool:
    """``flock(fd)`` if no other process holds it now."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def lock(fd: int, wait: float) -> bool:
    """``flock(fd)`` within ``wait`` seconds: ``True``, or ``False`` when it timed out.

    A blocking ``flock`` has no timeout; tries with growing sleeps (50 µs to 1 ms)
    keep a waiter within 1 ms of the holder's release.
    """
    deadline = time.monotonic() + wait
    pause = 0.00005
    while not try_lock(fd):
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.001)
    return True
