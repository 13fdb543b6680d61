"""Group commit for the event loop: one thread writes the requests of many.

A request handler awaits :meth:`Committer.write`; the committer's thread takes every
request waiting at that moment and commits them in one transaction
(:meth:`SpoolWriter.write_many <xpevents.relay.writer.SpoolWriter.write_many>`), then
resolves their futures with one hand-off back to the loop. Under load that is one
thread wake-up and one loop wake-up per *batch*, not per request (a worker thread per
request cost about a third of the relay's CPU in the profile of issue 16). Each
request still returns only after its own visitors are committed.

With ``inline=True`` the thread is the fallback. For a SQLite spool, the requests of
one event-loop iteration are committed in the loop itself when the write lock is free
at that moment (a ``BEGIN IMMEDIATE`` that does not wait), tried again every 0.2 ms
while another process (the forwarding child) holds it, and handed to the thread after
50 ms. A Redis spool opened from a URL appends from the loop with its asyncio client
(:mod:`xpevents.spool.redis.aio`), one append in flight, the requests arriving
meanwhile going into the next. In the thread, the loop and the committer passed the
GIL to each other at every SQLite and socket call: 61 µs of the committer's CPU and
55 µs more of the loop's per request, against 30-40 µs for the same commit in the loop
(issue 16, seventh pass).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final

from xpevents.errors import SpoolError
from xpevents.relay.writer import SpoolWriter

__all__ = ["Committer"]

_MAX_BATCH: Final = 256
"""Requests committed in one transaction at most."""

_TRY_EVERY: Final = 0.0002
"""Seconds between inline tries while another process holds SQLite's write lock (timed
by :class:`_Ticker`: the loop's own timers wait at least 1 ms, epoll's resolution)."""
_TRY_FOR: Final = 0.05
"""Seconds of inline tries before the thread takes the requests (and waits)."""

_Waiting = tuple[bytes, Sequence[bytes], "asyncio.Future[None]", asyncio.AbstractEventLoop]


class Committer:
    """Group commits of requests to ``writer``: in a thread, or with ``inline=True`` in the
    event loop where the store allows it (see the module docstring)."""

    def __init__(
        self, writer: SpoolWriter, *, max_batch: int = _MAX_BATCH, inline: bool = False
    ) -> None:
        self.writer = writer
        self._max_batch = max_batch
        self._inline = inline and writer.can_try_write
        self._async = writer.appends_async  # Redis: appends awaited on the loop
        self._flight: asyncio.Task[None] | None = None  # the async append in progress
        self._in_loop: list[_Waiting] = []  # submitted in this loop iteration (inline)
        self._locked_since: float | None = None  # monotonic: inline tries found it locked
        self._ticker = _Ticker() if self._inline else None
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
        if self._closed:
            raise SpoolError("the relay is shutting down")
        if self._inline or self._async:
            self._in_loop.append((envelope, visitors, future, loop))
            if len(self._in_loop) == 1:  # once per loop iteration: one commit for all
                loop.call_soon(self._commit_in_loop)
            return future
        self._hand_over([(envelope, visitors, future, loop)])
        return future

    def _commit_in_loop(self) -> None:
        """Commit the requests of this loop iteration here if the store's write lock is
        free now (no thread hand-off: the thread and the loop would pass the GIL back
        and forth at every SQLite call). While another process holds the lock, try again
        every 0.2 ms (requests arriving meanwhile join), for at most 50 ms; then, or
        while the thread has work, or for a store that cannot try, hand them to the
        thread, which waits for the lock as a commit always did."""
        if self._async:
            if self._flight is None and self._in_loop:
                batch, self._in_loop = self._in_loop, []
                self._flight = batch[0][3].create_task(self._append_async(batch))
            return
        batch, self._in_loop = self._in_loop, []
        with self._cond:
            busy = bool(self._waiting) or not self._idle or self._closed
        if busy:
            self._hand_over(batch)
            return
        try:
            outcomes = self.writer.try_write_many(
                [(envelope, visitors) for envelope, visitors, _, _ in batch], now=time.time()
            )
        except Exception as exc:
            outcomes = [exc] * len(batch)
        if outcomes is not None:
            self._locked_since = None
            done = zip(batch, outcomes, strict=True)
            _resolve([(future, outcome) for (_, _, future, _), outcome in done])
            return
        clock = time.monotonic()
        if self._locked_since is None:
            self._locked_since = clock
        elif clock - self._locked_since > _TRY_FOR:
            self._locked_since = None
            self._hand_over(batch)
            return
        retry = not self._in_loop  # else a call_soon is due already
        self._in_loop[:0] = batch
        if retry and self._ticker is not None:
            self._ticker.call_soon_after(_TRY_EVERY, batch[0][3], self._commit_in_loop)

    async def _append_async(self, batch: list[_Waiting]) -> None:
        """One async append for ``batch``; then one for what arrived meanwhile."""
        try:
            outcomes: Sequence[BaseException | None] = await self.writer.write_many_async(
                [(envelope, visitors) for envelope, visitors, _, _ in batch], now=time.time()
            )
        except Exception as exc:
            outcomes = [exc] * len(batch)
        finally:
            self._flight = None
        done = zip(batch, outcomes, strict=True)
        _resolve([(future, outcome) for (_, _, future, _), outcome in done])
        self._commit_in_loop()

    async def aclose(self) -> None:
        """Wait for an async append in progress and close the store's asyncio client
        (on the loop that used it; the relay's server calls it as it stops)."""
        if self._flight is not None:
            await asyncio.wait([self._flight])
        appender = getattr(self.writer.store, "appender", None)
        if appender is not None:
            await appender.aclose()

    def _hand_over(self, batch: list[_Waiting]) -> None:
        """Queue ``batch`` for the committer's thread (refused once it is closed)."""
        with self._cond:
            if self._closed:
                closed = SpoolError("the relay is shutting down")
                _resolve([(future, closed) for _, _, future, _ in batch])
                return
            self._waiting.extend(batch)
            if self._idle:
                self._idle = False
                self._cond.notify()

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is waiting, then stop the thread. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._ticker is not None:
            self._ticker.close()
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


class _Ticker:
    """Calls ``callback`` in ``loop`` ``delay`` seconds from now, to a tenth of a
    millisecond: a thread sleeps (``time.sleep`` is precise to tens of µs) and wakes the
    loop, whose own ``call_later`` cannot wait less than epoll's 1 ms. One call at a time
    (the committer asks for the next only once the last has run); started on first use."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._call: tuple[float, asyncio.AbstractEventLoop, Callable[[], None]] | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def call_soon_after(
        self, delay: float, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]
    ) -> None:
        """Run ``callback`` in ``loop`` after ``delay`` seconds (replaces a pending call)."""
        with self._cond:
            if self._closed:
                loop.call_later(delay, callback)
                return
            self._call = (delay, loop, callback)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="xpevents-relay-ticker", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def close(self) -> None:
        """Stop the thread (a pending call is dropped). Idempotent."""
        with self._cond:
            self._closed = True
            self._call = None
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._call is None and not self._closed:
                    self._cond.wait()
                call, self._call = self._call, None
                if call is None:  # closed
                    return
            delay, loop, callback = call
            time.sleep(delay)
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(callback)


def _resolve(done: list[tuple[asyncio.Future[None], object]]) -> None:
    for future, outcome in done:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(None)
