"""Group commit for the event loop: one thread writes the requests of many.

A request handler awaits :meth:`Committer.write`; the committer's thread takes every
request waiting at that moment and commits them in one transaction
(:meth:`SpoolWriter.write_many <xpevents.relay.writer.SpoolWriter.write_many>`), then
resolves their futures with one hand-off back to the loop. Under load that is one
thread wake-up and one loop wake-up per *batch*, not per request (a worker thread per
request cost about a third of the relay's CPU in the profile of issue 16). Each
request still returns only after its own visitors are committed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Final

from xpevents.errors import SpoolError
from xpevents.relay.writer import SpoolWriter

__all__ = ["Committer"]

_MAX_BATCH: Final = 256
"""Requests committed in one transaction at most."""

_Waiting = tuple[bytes, Sequence[bytes], "asyncio.Future[None]", asyncio.AbstractEventLoop]


class Committer:
    """A thread committing requests to ``writer`` in batches (see the module docstring)."""

    def __init__(self, writer: SpoolWriter, *, max_batch: int = _MAX_BATCH) -> None:
        self.writer = writer
        self._max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._cond = threading.Condition(threading.Lock())
        self._idle = False
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name="xpevents-relay-committer", daemon=True
        )
        self._thread.start()

    async def write(self, envelope: bytes, visitors: Sequence[bytes]) -> None:
        """Commit ``visitors`` under ``envelope``; return once committed.

        Raises:
            SpoolFull: admitting them would pass the spool's limits.
            SpoolError: the store failed (or the committer is closed).
        """
        # Not shielded (a shield is two more futures per request): a cancelled wait
        # cancels only this future; the entry is committed all the same, and _resolve
        # skips a future that is done.
        await self.submit(envelope, visitors)

    def submit(self, envelope: bytes, visitors: Sequence[bytes]) -> asyncio.Future[None]:
        """Queue ``visitors`` for the next commit; the future is done once committed
        (or carries the error :meth:`write` raises). Called from the event loop.

        Raises:
            SpoolError: the committer is closed.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self._closed:
                raise SpoolError("the relay is shutting down")
            self._waiting.append((envelope, visitors, future, loop))
            if self._idle:
                self._idle = False
                self._cond.notify()
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is waiting, then stop the thread. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._idle = True
                    self._cond.wait()
                self._idle = False
                if not self._waiting:
                    return
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
            try:
                outcomes = self.writer.write_many(
                    [(envelope, visitors) for envelope, visitors, _, _ in batch], now=time.time()
                )
            except BaseException as exc:
                outcomes = [exc] * len(batch)
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], object]]]
            by_loop = {}
            for (_, _, future, loop), outcome in zip(batch, outcomes, strict=True):
                by_loop.setdefault(loop, []).append((future, outcome))
            for loop, done in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_resolve, done)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    pass


def _resolve(done: list[tuple[asyncio.Future[None], object]]) -> None:
    for future, outcome in done:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(None)
