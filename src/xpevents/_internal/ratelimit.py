"""Log at most once every N seconds per key, counting what happened in between.

A failing store or a full queue can produce the same warning thousands of times a
second; one line per key and interval, with how many occurrences it stands for, says
the same without flooding the log.
"""

from __future__ import annotations

import threading
import time

__all__ = ["LogEvery"]


class LogEvery:
    """Decide when a repeated log line may be written again.

    Args:
        seconds: the shortest interval between two lines of one key.

    :meth:`due` answers whether a line may go out now; :meth:`tally` also adds up how
    many occurrences a line stands for. Thread-safe.
    """

    __slots__ = ("_last", "_lock", "_pending", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last: dict[str, float] = {}
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()

    def due(self, key: str = "", *, now: float | None = None) -> bool:
        """True (and the interval restarts) when no line of ``key`` went out recently.

        The common answer (no, a line went out recently) takes no lock: it runs for
        every dropped event of a full queue.
        """
        clock = time.monotonic() if now is None else now
        last = self._last.get(key)
        if last is not None and clock - last < self.seconds:
            return False
        return self.tally(key, 1, now=clock) is not None

    def tally(self, key: str, count: int, *, now: float | None = None) -> int | None:
        """Add ``count`` occurrences of ``key``; return the total to log, or ``None`` yet."""
        clock = time.monotonic() if now is None else now
        with self._lock:
            pending = self._pending.get(key, 0) + count
            last = self._last.get(key)
            if last is not None and clock - last < self.seconds:
                self._pending[key] = pending
                return None
            self._last[key] = clock
            self._pending[key] = 0
            return pending

    def reset(self) -> None:
        """Forget every key (a forked child starts with fresh state)."""
        self._lock = threading.Lock()
        self._last.clear()
        self._pending.clear()
