"""Visitors lost before any delivery attempt: counted by reason, logged, reported.

A dispatcher never raises into the caller and never loses a visitor silently: an event
refused at enqueue (closed, invalid, not serialisable, queue full...), a queued visitor
evicted by ``drop_oldest``, a visitor a failing durable store could not keep, and the
ones still unsent when a memory-spooled dispatcher closes all pass through here: they
are counted in ``stats().dropped[reason]``, logged at most once per reason every 10 s,
and handed to the user's ``on_drop(event_or_visitor, reason)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from xpevents._internal.ratelimit import LogEvery
from xpevents.stats import StatsRecorder

__all__ = ["Drops"]

logger = logging.getLogger("xpevents.dispatch")

_LOG_EVERY: Final = 10


class Drops:
    """Count, log and report lost visitors.

    Args:
        recorder: the dispatcher's counters.
        on_drop: ``on_drop(event_or_visitor, reason)`` or ``None``.
    """

    def __init__(self, recorder: StatsRecorder, on_drop: Callable[[Any, str], object] | None):
        self.recorder = recorder
        self.on_drop = on_drop
        self.reset_after_fork()

    def reset_after_fork(self) -> None:
        """A forked child logs afresh."""
        self._log = LogEvery(_LOG_EVERY)

    def refuse(self, event: Any, visitors: int, reason: str, exc: Exception | None = None) -> None:
        """An event refused at enqueue: one call, ``visitors`` dropped."""
        error = None if exc is None else f"event dropped ({reason}): {exc}"
        self.recorder.record_refused(visitors, reason, error)
        self._warn(reason, exc)
        self.recorder.run_callback(self.on_drop, event, reason)

    def evicted(self, visitor: bytes, reason: str) -> None:
        """A queued visitor was evicted to make room (``drop_oldest``)."""
        self.recorder.record_dropped(reason, 1)
        self._warn(reason, None)
        self.recorder.run_callback(self.on_drop, visitor, reason)

    def spool_dropped(self, reason: str, count: int) -> None:
        """The durable front's report (store failing, buffer full, closed)."""
        self.recorder.record_dropped(reason, count)

    def unsent(self, visitors: list[bytes], owner: str) -> None:
        """Visitors still in the memory spool when the dispatcher closed."""
        logger.warning("%s closed with %d visitor(s) unsent: they are lost", owner, len(visitors))
        self.recorder.record_dropped("unsent_at_close", len(visitors))
        for visitor in visitors:
            self.recorder.run_callback(self.on_drop, visitor, "unsent_at_close")

    def _warn(self, reason: str, exc: Exception | None) -> None:
        """One warning per reason and episode (at most one per 10 s), not per event."""
        if not self._log.due(reason):
            return
        detail = f": {exc}" if exc is not None else ""
        logger.warning(
            "event dropped (%s)%s; drops are counted in stats().dropped (logged at most "
            "every %d s per reason)",
            reason,
            detail,
            _LOG_EVERY,
        )
