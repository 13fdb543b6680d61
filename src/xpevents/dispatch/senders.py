"""Which of BatchDispatcher's sender threads send: two always, reserves while it is slow.

Against a fast endpoint two senders keep up, and more threads would only contend with
the caller's code for the GIL; against a slow one (200 ms) every request in flight
carries at most ``max_batch_bytes``, so throughput is senders * batch / latency and
more requests in flight are what carries more. A reserve sender joins while every
sender before it has had its request in flight for :data:`SLOW_REQUEST` or more.
"""

from __future__ import annotations

import threading
import time
from typing import Final

__all__ = ["ALWAYS_SENDING", "SLOW_REQUEST", "SenderSlots"]

ALWAYS_SENDING: Final = 2
"""Senders that always send; the others are reserves."""
SLOW_REQUEST: Final = 0.025
"""Seconds every earlier sender's request must have been in flight for a reserve to join."""


class SenderSlots:
    """Per sender thread: when its request in flight started; the reserves' rule."""

    __slots__ = ("started", "stopped")

    def __init__(self, senders: int) -> None:
        self.started = [0.0] * senders
        """Per sender: monotonic start of its request in flight, 0.0 when idle."""
        self.stopped = threading.Event()
        """Set when the dispatcher stops: reserves waiting their turn return at once."""

    def stays_out(self, index: int, *, flushing: bool) -> bool:
        """Whether sender ``index`` sits this round out (after waiting a moment).

        Never for the first :data:`ALWAYS_SENDING` senders, nor during a flush or a
        stop; a reserve waits :data:`SLOW_REQUEST` while others are busy, 0.5 s when
        all are idle, then asks again.
        """
        if index < ALWAYS_SENDING or flushing or self.stopped.is_set():
            return False
        started = self.started[:index]
        if all(started) and time.monotonic() - max(started) >= SLOW_REQUEST:
            return False
        self.stopped.wait(SLOW_REQUEST if any(started) else 0.5)
        return True

    def begin(self, index: int) -> None:
        """Sender ``index`` starts sending a batch."""
        self.started[index] = time.monotonic()

    def end(self, index: int) -> None:
        """Sender ``index`` is done with its batch."""
        self.started[index] = 0.0
