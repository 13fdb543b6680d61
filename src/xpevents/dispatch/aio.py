"""The asyncio dispatcher: the same batching, retries, spool and stats, on the event loop.

:class:`AsyncDispatcher` is :class:`~xpevents.BatchDispatcher` for asyncio applications
(FastAPI, Starlette, aiohttp). Both drive the same
:class:`~xpevents.dispatch.core.DispatchCore`; here the senders are tasks on the running
loop sharing one ``httpx.AsyncClient``, so no thread competes with the application for
the GIL. ``dispatch_event`` is a plain (not ``async``) method: it encodes, appends to
the bounded queue and returns, from the loop or from any other thread (the official
SDK calls it from its own), waking the loop only when a batch is due.

The loop never does SQLite or Redis I/O: a durable spool is group-committed by the
spool's background writer thread (``durability="interval"``) and claims, acks and
retries run on one spool thread.

See ``docs/asyncio.md``.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import httpx

from xpevents._internal import forking
from xpevents._internal.redact import shown_url
from xpevents.dispatch._http import async_client, bounded_request
from xpevents.dispatch.core import DispatchCore, Request, finite_timeout
from xpevents.dispatch.leftover import report_abandoned, report_loop_stopped
from xpevents.dispatch.loop import Signals, SpoolThread
from xpevents.dispatch.options import DispatchOptions
from xpevents.errors import ConfigError, DispatchError
from xpevents.send.retry import BACKGROUND_RETRY, RetryPolicy
from xpevents.spool.base import Spool
from xpevents.stats import DispatchOutcome, DispatchStats

__all__ = ["AsyncDispatcher"]

logger = logging.getLogger("xpevents.dispatch")

_T = TypeVar("_T")
_GZIP_OFFLOAD_BYTES: Final = 64 * 1024
"""Bodies larger than this are gzip-compressed in a worker thread, not on the loop."""
_FLUSH_POLL: Final = 0.05

_live: weakref.WeakSet[AsyncDispatcher] = weakref.WeakSet()


def _report_unclosed_at_exit() -> None:
    # The loop is gone at exit: nothing can be sent, but the loss is said and counted.
    for dispatcher in list(_live):
        try:
            report_abandoned(dispatcher._core, "reached interpreter exit")
        except Exception:  # pragma: no cover - never let atexit fail
            pass


atexit.register(_report_unclosed_at_exit)


class AsyncDispatcher:
    """Queue events in memory, send them in batches from tasks on the event loop, retry.

    Usage (Starlette/FastAPI lifespan)::

        dispatcher = AsyncDispatcher()

        @contextlib.asynccontextmanager
        async def lifespan(app):
            async with dispatcher:          # starts the senders on this loop
                yield                       # ...and flushes, then closes, at shutdown

    ``dispatch_event(event)`` is a plain method: call it without ``await`` from the
    loop (a handler), or from any thread (the official SDK's event processor). It never
    blocks and never raises. The sender tasks start on the running loop at the first
    ``dispatch_event`` made from it, at ``await start()``, ``await flush()`` or
    ``async with``; events dispatched before that (from a thread with no running loop,
    or before the app started) are queued and sent once the senders start.

    Args:
        endpoint, batch_size, flush_interval, max_batch_bytes, max_queue_events,
        retry, gzip, lease, circuit_threshold, on_drop, on_success, on_failure,
        commit_interval, on_spool_error, max_spool_events, max_spool_bytes,
        max_event_age: as :class:`~xpevents.BatchDispatcher` (same defaults).
        overflow: ``"drop_newest"`` (default) or ``"drop_oldest"``. ``"block"`` is
            refused (``ConfigError``): waiting for room would block the event loop.
        max_concurrent_requests: sender tasks (requests in flight at most). Default 2.
        timeout: seconds; per request (connect, write, read, pool). Default 10.
        http_client: an ``httpx.AsyncClient`` of yours (not closed by :meth:`aclose`);
            it must be used on the loop the dispatcher runs on.
        spool: ``None`` / ``"memory://"`` (default), a durable spool URL
            (``"sqlite:///path.db"``, ``"redis://..."``), a ``pathlib.Path`` or a
            :class:`~xpevents.spool.Spool` object.
        durability: ``"interval"`` (the default and the only mode: visitors are
            committed by the spool's writer thread every ``commit_interval``
            seconds; ``"always"`` would commit on the loop and is refused).

    Callbacks run on the event loop with the memory spool, on the spool thread with a
    durable spool (``on_drop`` for an event refused at enqueue runs in the caller).

    Raises:
        ConfigError: an argument is invalid; the message names it and the fix.
    """

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        max_batch_bytes: int = 1_048_576,
        max_queue_events: int = 10_000,
        overflow: str = "drop_newest",
        max_concurrent_requests: int = 2,
        timeout: float = 10.0,
        retry: RetryPolicy = BACKGROUND_RETRY,
        http_client: httpx.AsyncClient | None = None,
        gzip: bool = False,
        lease: float = 30.0,
        circuit_threshold: int = 5,
        on_drop: Callable[[Any, str], object] | None = None,
        on_success: Callable[[list[bytes]], object] | None = None,
        on_failure: Callable[[list[bytes], DispatchError], object] | None = None,
        spool: str | os.PathLike[str] | Spool | None = None,
        durability: str = "interval",
        commit_interval: float = 0.005,
        on_spool_error: str = "memory",
        max_spool_events: int | None = None,
        max_spool_bytes: int | None = None,
        max_event_age: float | None = None,
    ) -> None:
        # Every option by name; block_timeout is 0: nothing ever waits on the loop.
        arguments = {**locals(), "block_timeout": 0.0}
        options = DispatchOptions.from_arguments(type(self).__name__, arguments, on_event_loop=True)
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise ConfigError(
                f"{options.owner}(http_client={http_client!r}): expected an "
                "httpx.AsyncClient (an httpx.Client belongs to BatchDispatcher)"
            )
        self._workers = options.max_concurrent_requests
        self._timeout = options.timeout
        self._core = core = DispatchCore(options)
        self._enqueue = core.enqueue
        # Every spool but the memory one does I/O (or may): run it on the spool thread.
        self._offload = core.memory is None
        self._io = SpoolThread(offload=self._offload)
        self._user_client = http_client
        self._init_runtime()
        core.set_hooks(wake=self._wake, settled=self._notify_settled)
        forking.track(self, forking.Stage.DISPATCHER)
        _live.add(self)

    def __del__(self) -> None:
        core = getattr(self, "_core", None)
        if core is not None and not core.closed:
            try:
                report_abandoned(core, "was garbage-collected")
            except Exception:  # pragma: no cover - a finalizer must never raise
                pass

    def _init_runtime(self) -> None:
        """State bound to one event loop (and one process)."""
        self._signals = Signals()
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = self._user_client
        self._io = SpoolThread(offload=self._offload)
        self._flushing = 0
        self._stopping = False
        self._attach_lock = threading.Lock()

    def _reset_after_fork(self) -> None:
        # The parent's loop, tasks, threads and sockets are not ours: start afresh
        # and empty (the parent sends what it queued).
        self._core.reset_after_fork()
        self._init_runtime()

    # -- public API ---------------------------------------------------------------------

    @property
    def endpoint(self) -> str | None:
        """The ``endpoint`` option (``None``: each event's own URL)."""
        return self._core.router.endpoint

    @property
    def spool(self) -> Spool:
        """The spool the senders read from."""
        return self._core.store

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the senders run on (``None`` until they start)."""
        return self._signals.loop

    def dispatch_event(self, event: Any) -> None:
        """Queue ``event``'s visitors for sending; return at once. Never raises, never blocks.

        Call it without ``await``, from the event loop or from any thread. The event is
        not modified; its visitors are encoded now.
        """
        if self._signals.loop is None:
            self._attach_from_caller()
        self._enqueue(event)

    async def start(self) -> None:
        """Start the sender tasks on the running loop now. Idempotent.

        Raises:
            ConfigError: the dispatcher already runs on another loop that is running.
        """
        self._attach(asyncio.get_running_loop())

    def stats(self) -> DispatchStats:
        """A snapshot of the counters (see :class:`~xpevents.DispatchStats`).

        With a durable spool this reads the store's counters (a short query): call it
        off the loop (``await asyncio.to_thread(d.stats)``) if that matters.
        """
        return self._core.snapshot(time.time())

    async def flush(self, timeout: float = 10.0) -> DispatchOutcome:
        """Send everything enqueued before this call; wait at most ``timeout`` seconds.

        Returns what happened meanwhile; ``pending`` counts visitors enqueued before the
        call and still unsettled (retrying, in flight or waiting) at the deadline.
        """
        seconds = finite_timeout("flush", timeout)
        deadline = time.monotonic() + seconds
        if not self._core.closed:
            self._attach(asyncio.get_running_loop())
        return await self._flush_until(deadline)

    async def aclose(self, timeout: float = 10.0) -> DispatchOutcome:
        """Flush, then stop the senders; everything within ``timeout`` seconds. Idempotent.

        Later ``dispatch_event`` calls drop their event (reason ``"closed"``). With the
        memory spool, visitors still unsent at the deadline are lost: reported in
        ``pending`` and counted as dropped (``"unsent_at_close"``). Requests still in
        flight at the deadline are cancelled.
        """
        seconds = finite_timeout("aclose", timeout)
        deadline = time.monotonic() + seconds
        core = self._core
        if core.closed:
            return DispatchOutcome()
        loop = self._signals.loop
        if loop is None or loop.is_closed():
            self._attach(asyncio.get_running_loop())
        core.closed = True
        _live.discard(self)
        forking.untrack(self)
        outcome = await self._flush_until(deadline)
        self._stopping = True
        self._signals.wake.set()
        tasks = [task for task in self._tasks if not task.done()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)
        pending = max(outcome.pending, core.discard_unsent())
        await self._io.run(core.close_spool, max(0.0, deadline - time.monotonic()))
        self._io.shutdown()
        if self._user_client is None and self._client is not None:
            await self._client.aclose()
        return replace(outcome, pending=pending)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(endpoint={shown_url(self.endpoint)}, batch_size="
            f"{self._core.options.batch_size}, spool={shown_url(self._core.store.url)})"
        )

    # -- loop binding and wake-ups ---------------------------------------------------------

    def _attach_from_caller(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread: queue; start at the next chance
            return
        try:
            self._attach(loop)
        except Exception:  # never raise from dispatch_event
            logger.exception("AsyncDispatcher could not start its senders")

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind to ``loop`` (the running loop of this thread) and start the senders."""
        with self._attach_lock:
            current = self._signals.loop
            if current is loop and self._tasks and not all(t.done() for t in self._tasks):
                return
            if self._core.closed:
                return
            if current is not None and current is not loop:
                if current.is_running() and not current.is_closed():
                    raise ConfigError(
                        f"{self!r} runs on another event loop that is still running; "
                        "use one AsyncDispatcher per loop"
                    )
                # The old loop is gone: its client's connections died with it.
                if self._user_client is None:
                    self._client = None
            self._signals.bind(loop)
            self._stopping = False
            if self._client is None:
                self._client = async_client(self._workers, self._timeout)
            self._io.start()
            self._tasks = [
                loop.create_task(self._sender(), name=f"xpevents-aio-sender-{index}")
                for index in range(self._workers)
            ]

    def _wake(self) -> None:
        self._signals.wake_senders()

    def _notify_settled(self) -> None:
        self._signals.notify_settled()

    # -- flush ------------------------------------------------------------------------------

    async def _flush_until(self, deadline: float) -> DispatchOutcome:
        core = self._core
        before = core.totals()
        called_at = time.time()
        pending = await self._io.run(core.pending_since, called_at)
        self._flushing += 1
        self._signals.wake.set()
        settled = self._signals.settled
        try:
            while pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._tasks:
                    break
                settled.clear()
                core.flush_waiters += 1
                try:
                    async with asyncio.timeout(min(remaining, _FLUSH_POLL)):
                        await settled.wait()
                except TimeoutError:
                    pass
                finally:
                    core.flush_waiters -= 1
                pending = await self._io.run(core.pending_since, called_at)
        finally:
            self._flushing -= 1
        return core.outcome_since(before, pending)

    # -- the sender tasks -----------------------------------------------------------------

    async def _sender(self) -> None:
        try:
            await self._sender_loop()
        except asyncio.CancelledError:
            if not self._stopping:
                # Cancelled without aclose(): the app's loop is shutting down (uvicorn
                # ends asyncio.run, then re-raises SIGTERM, so atexit never runs).
                report_loop_stopped(self._core)
            raise

    async def _sender_loop(self) -> None:
        event = self._signals.wake
        while not self._stopping:
            event.clear()
            try:
                pause = await self._step()
            except Exception:  # a bug must not kill the sender; leases expire and retry
                logger.exception("AsyncDispatcher sender error; continuing")
                pause = 0.1
            if pause > 0 and not self._stopping:
                try:
                    async with asyncio.timeout(pause):
                        await event.wait()
                except TimeoutError:
                    pass

    async def _step(self) -> float:
        """Send one batch if one is due; else return how long to wait."""
        now = time.time()
        flushing = bool(self._flushing)
        result = await self._io.run(self._core.next_batch, now, flushing, self._stopping)
        if isinstance(result, float):
            return result
        for request in result:
            await self._send(request)
        return 0.0

    async def _send(self, request: Request) -> None:
        """POST one request and settle it (and the halves of a 413, depth first)."""
        core = self._core
        client = self._client
        assert client is not None
        gzip = core.options.gzip
        if gzip and request.content is None and len(request.body) > _GZIP_OFFLOAD_BYTES:
            await asyncio.get_running_loop().run_in_executor(None, core.compress, request)
        core.begin(request, time.time())
        response: httpx.Response | None = None
        error: BaseException | None = None
        try:
            response = await bounded_request(client, request, self._timeout)
        except Exception as exc:
            error = exc
        except BaseException:  # cancelled at aclose(): the lease expires, nothing lost
            core.abandon(request)
            raise
        follow_ups = await self._io.run(core.settle, request, response, error, time.time())
        for follow_up in follow_ups:
            await self._send(follow_up)
