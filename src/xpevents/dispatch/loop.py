"""What ties :class:`~xpevents.AsyncDispatcher` to its event loop.

* :class:`Signals`: the loop's wake-up and "something settled" events, set from any
  thread (``dispatch_event`` may run in the official SDK's own thread);
* :class:`SpoolThread`: spool calls off the loop. The memory spool never does I/O, so
  its calls run inline; every other spool (SQLite, Redis, a user's) may block, so its
  calls run on one worker thread: one, so that claims, acks and retries of one
  dispatcher never race each other, and the loop only awaits them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["Signals", "SpoolThread"]

_T = TypeVar("_T")


class SpoolThread:
    """Run spool calls inline (``offload=False``) or on one worker thread."""

    def __init__(self, *, offload: bool) -> None:
        self.offload = offload
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Create the worker thread's pool now (it is otherwise created on first use)."""
        if self.offload:
            self._pool()

    async def run(self, function: Callable[..., _T], *args: Any) -> _T:
        """``function(*args)``, awaited on the worker thread when offloading."""
        if not self.offload:
            return function(*args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), function, *args)

    def shutdown(self) -> None:
        """Let the worker thread end (calls in progress finish). Idempotent."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="xpevents-aio-spool"
            )
        return self._executor


class Signals:
    """The sender tasks' wake-up event and the flushes' settled event, on one loop."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.wake = asyncio.Event()
        self.settled = asyncio.Event()
        self._thread = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use ``loop`` (the running loop of this thread) with fresh events."""
        self.loop = loop
        self._thread = threading.get_ident()
        self.wake = asyncio.Event()
        self.settled = asyncio.Event()

    def wake_senders(self) -> None:
        """A batch is due or the queue was empty (from any thread)."""
        self._set(self.wake)

    def notify_settled(self) -> None:
        """Something settled: a waiting flush looks again (from any thread)."""
        self._set(self.settled)

    def _set(self, event: asyncio.Event) -> None:
        loop = self.loop
        if loop is None:
            return
        if threading.get_ident() == self._thread:
            event.set()
        else:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop is closed; the next start() picks them up
                pass


async def wait_for_event(event: asyncio.Event, seconds: float) -> None:
    """Until ``event`` is set or ``seconds`` passed, whichever comes first."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        pass
