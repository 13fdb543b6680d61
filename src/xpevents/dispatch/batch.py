"""The production dispatcher: queue in memory (or a durable spool), batch, send, retry.

``dispatch_event`` encodes each visitor once (msgspec), appends the bytes to a bounded
queue and returns: no I/O, no lock shared with a sender in the common case, no
exception. Sender threads (``max_concurrent_requests``, sharing one pooled
``httpx.Client``) claim the oldest visitors of one envelope, join them into one body
and POST it (with the dispatcher's own client, a POST that httpx would send direct goes
on :mod:`http.client` through :class:`~xpevents.dispatch.direct.DirectPool`: the same
headers, TLS context, proxy decision and deadline at a fraction of the CPU); retries are
scheduled in the spool with exponential backoff and full jitter, ``Retry-After``
honoured, and a circuit breaker per target URL keeps a failing endpoint from being
hammered or from holding up other targets.

Everything except the threads and the HTTP calls lives in
:class:`~xpevents.dispatch.core.DispatchCore`, shared with
:class:`~xpevents.AsyncDispatcher`: this module only starts, wakes and stops threads.

See ``docs/batch.md`` for every option, the overflow policies and the lifecycle
(flush, close, atexit, fork, serverless).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx

from xpevents._internal import forking
from xpevents._internal.closing import Closing
from xpevents._internal.redact import shown_url
from xpevents._internal.validate import positive_seconds
from xpevents.dispatch._http import send_sync, sync_client
from xpevents.dispatch.core import DispatchCore, Request, finite_timeout
from xpevents.dispatch.direct import DirectPool
from xpevents.dispatch.leftover import CLOSED_AT_EXIT
from xpevents.dispatch.options import DispatchOptions
from xpevents.dispatch.resolve import HostCache
from xpevents.dispatch.senders import SenderSlots
from xpevents.errors import ConfigError, DispatchError
from xpevents.events.wire import EncodedEvent
from xpevents.send.outcome import ResponseLike
from xpevents.send.retry import BACKGROUND_RETRY, RetryPolicy
from xpevents.spool.base import Spool
from xpevents.stats import DispatchOutcome, DispatchStats

__all__ = ["BatchDispatcher"]

logger = logging.getLogger("xpevents.dispatch")

_getpid = os.getpid
_abandoned: list[tuple[httpx.Client, DirectPool | None]] = []
"""Clients and direct pools inherited from a parent process: never used nor closed in
the child (closing could shut down sockets the parent still uses)."""


forking.at_fork(_abandoned.clear, forking.Stage.DISPATCHER)


class BatchDispatcher(Closing):
    """Queue events in memory, send them in batches from background threads, retry.

    Works wherever a dispatcher is expected: under :class:`xpevents.Client` and, as it
    is, as the official SDK's ``event_dispatcher``. The unit of queueing, batching,
    counting and dropping is the visitor.

    Args:
        endpoint: send everything here instead of each event's URL (as in
            :class:`~xpevents.DefaultEventDispatcher`). Default ``None``.
        batch_size: a send is due once this many visitors wait. Default 100.
        flush_interval: ...or once the oldest waiting visitor has waited this long, in
            seconds. Default 1.
        max_batch_bytes: body size cap of one request; a due send takes everything
            waiting for its envelope up to this size. Default 1 MiB; at most 3,500,000
            (the event API's limit).
        max_queue_events: most visitors held in memory (waiting, in flight or waiting
            for a retry). Default 10,000.
        overflow: ``"drop_newest"`` (default), ``"drop_oldest"`` or ``"block"``.
        block_timeout: seconds ``overflow="block"`` waits for room. Default 1.
        max_concurrent_requests: sender threads (requests in flight at most). Default 4.
            The first two always send; each further one joins only while every
            sender before it has had its request in flight for 25 ms or more (a slow
            endpoint, where more requests in flight carry more), so a fast endpoint
            is served by two threads that do not contend with your code for the GIL.
        timeout: seconds; per request (connect, write, read, pool). Default 10.
        retry: a :class:`~xpevents.RetryPolicy`; default
            :data:`~xpevents.BACKGROUND_RETRY` (no attempt limit, 0.5 s base, 30 s
            cap, full jitter, ``Retry-After`` up to 5 min, retries end after 1 h).
        http_client: an ``httpx.Client`` of yours; not closed by :meth:`close`.
        gzip: compress bodies (``Content-Encoding: gzip``). Default ``False``.
        lease: seconds a sender holds claimed visitors before another may take them.
            Default 30.
        circuit_threshold: consecutive failed requests to one URL that open its
            circuit. Default 5.
        atexit_timeout: seconds the interpreter-exit hook spends closing (flushing)
            the dispatcher; ``None`` disables the hook. Default 5.
        on_drop: ``on_drop(event_or_visitor, reason)``: the event object for an event
            refused at enqueue, the encoded visitor (bytes) for a queued one evicted.
        on_success: ``on_success(visitors: list[bytes])`` after each delivered batch.
        on_failure: ``on_failure(visitors: list[bytes], error: DispatchError)`` for
            each batch given up on (dead-lettered).
        spool: ``None`` / ``"memory://"`` (default), a durable spool URL
            (``"sqlite:///path.db"``, ``"redis://..."``), a ``pathlib.Path`` or a
            :class:`~xpevents.spool.Spool` object.
        durability, commit_interval, on_spool_error: durable spools only (see
            ``SpoolFront``).
        max_spool_events, max_spool_bytes, max_event_age: durable backends' bounds
            (``None``: the backend's default).

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
        block_timeout: float = 1.0,
        max_concurrent_requests: int = 4,
        timeout: float = 10.0,
        retry: RetryPolicy = BACKGROUND_RETRY,
        http_client: httpx.Client | None = None,
        gzip: bool = False,
        lease: float = 30.0,
        circuit_threshold: int = 5,
        atexit_timeout: float | None = 5.0,
        on_drop: Callable[[Any, str], object] | None = None,
        on_success: Callable[[list[bytes]], object] | None = None,
        on_failure: Callable[[list[bytes], DispatchError], object] | None = None,
        spool: str | os.PathLike[str] | Spool | None = None,
        durability: str = "always",
        commit_interval: float = 0.005,
        on_spool_error: str = "memory",
        max_spool_events: int | None = None,
        max_spool_bytes: int | None = None,
        max_event_age: float | None = None,
    ) -> None:
        options = DispatchOptions.from_arguments(type(self).__name__, locals(), on_event_loop=False)
        if http_client is not None and not isinstance(http_client, httpx.Client):
            raise ConfigError(
                f"{options.owner}(http_client={http_client!r}): expected an httpx.Client "
                "(an httpx.AsyncClient belongs to AsyncDispatcher)"
            )
        self._atexit_timeout = (
            None
            if atexit_timeout is None
            else positive_seconds("atexit_timeout", atexit_timeout, owner=options.owner)
        )
        self._workers = options.max_concurrent_requests
        self._timeout = options.timeout
        self._core = core = DispatchCore(options)
        self._enqueue = core.enqueue
        self.refusal_gate = core.enqueuer.gate
        """Our client asks it before building an event the full queue would refuse
        (``drop_newest`` without ``on_drop``, else ``None``; :mod:`xpevents.dispatch.gate`)."""
        self._store = core.store
        self._own_client = http_client is None
        self._direct: DirectPool | None = None  # set by _new_client (own client only)
        self._client = http_client if http_client is not None else self._new_client()
        self._init_runtime()
        CLOSED_AT_EXIT.add(self)
        forking.track(self, forking.Stage.DISPATCHER)
        if core.memory is None and self._has_backlog():
            # A durable spool left with events by an earlier process: deliver them now,
            # not only after the next dispatch_event.
            self._start()

    def _has_backlog(self) -> bool:
        try:
            return self._store.next_due_at(now=time.time()) is not None
        except Exception:  # a failing store is reported by its own front; senders retry
            logger.warning("could not read the spool's backlog at start", exc_info=True)
            return True

    def _new_client(self) -> httpx.Client:
        client = sync_client(self._workers, self._timeout)
        self._direct = DirectPool.for_client(client, HostCache())
        return client

    def _init_runtime(self) -> None:
        """State that does not survive a fork: threads, locks, events."""
        self._pid: int | None = None
        self._threads: list[threading.Thread] = []
        self._slots = SenderSlots(self._workers)
        self._lifecycle = threading.Lock()
        self._wake = threading.Event()
        self._settled = threading.Condition(threading.Lock())
        self._flushing = 0
        self._stopping = False
        self._core.set_hooks(wake=self._wake.set, settled=self._notify_settled)

    def _reset_after_fork(self) -> None:
        # The parent's threads do not exist here and its sockets are shared with the
        # parent: start afresh and empty (the parent sends what it queued).
        self._core.reset_after_fork()
        self._init_runtime()
        if self._own_client and not self._core.closed:
            _abandoned.append((self._client, self._direct))
            self._client = self._new_client()

    # -- public API ---------------------------------------------------------------------

    @property
    def endpoint(self) -> str | None:
        """The ``endpoint`` option (``None``: each event's own URL)."""
        return self._core.router.endpoint

    @property
    def spool(self) -> Spool:
        """The spool the senders read from."""
        return self._store

    def dispatch_event(self, event: Any) -> None:
        """Queue ``event``'s visitors for sending; return at once. Never raises.

        The event is not modified. Its visitors are encoded now, so later changes to
        the event do not affect what is sent.
        """
        # Our own client's events were built after the event-id generator checked its
        # fork mark (and reset us in a forked child): only other events pay a getpid().
        if self._pid is None or (type(event) is not EncodedEvent and self._pid != _getpid()):
            try:
                self._start()
            except Exception:  # cannot start a thread: queue anyway, flush retries
                logger.exception("BatchDispatcher could not start its senders")
        self._enqueue(event)

    def start(self) -> None:
        """Start the sender threads now (they otherwise start at the first dispatch).

        For a spool filled by someone else (the relay). Idempotent; fork-aware.
        """
        if self._pid != os.getpid():
            self._start()

    def notify(self) -> None:
        """Wake the senders: records were appended to the spool behind our back."""
        self._wake.set()

    def stats(self) -> DispatchStats:
        """A snapshot of the counters (see :class:`~xpevents.DispatchStats`)."""
        return self._core.snapshot(time.time())

    def flush(self, timeout: float = 10.0) -> DispatchOutcome:
        """Send everything enqueued before this call; wait at most ``timeout`` seconds.

        Returns what happened meanwhile; ``pending`` counts visitors enqueued before the
        call and still unsettled (retrying, in flight or waiting) at the deadline.
        Visitors waiting for a retry are not sent earlier than their schedule.
        """
        seconds = finite_timeout("flush", timeout)
        return self._flush_until(time.monotonic() + seconds)

    def close(self, timeout: float = 10.0) -> DispatchOutcome:
        """Flush, then stop the senders; everything within ``timeout`` seconds. Idempotent.

        Later ``dispatch_event`` calls drop their event (reason ``"closed"``). With the
        memory spool, visitors still unsent at the deadline are lost: they are reported
        in ``pending`` and counted as dropped (``"unsent_at_close"``).
        """
        seconds = finite_timeout("close", timeout)
        deadline = time.monotonic() + seconds
        core = self._core
        with self._lifecycle:
            if core.closed:
                return DispatchOutcome()
            core.closed = True
        CLOSED_AT_EXIT.discard(self)
        forking.untrack(self)
        outcome = self._flush_until(deadline)
        self._stopping = True
        self._slots.stopped.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stopped = not any(thread.is_alive() for thread in self._threads)
        pending = max(outcome.pending, core.discard_unsent())
        core.close_spool(deadline - time.monotonic())
        if self._own_client and stopped:
            self._client.close()
            if self._direct is not None:
                self._direct.close()
        return replace(outcome, pending=pending)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(endpoint={shown_url(self.endpoint)}, "
            f"batch_size={self._core.options.batch_size}, "
            f"spool={shown_url(self._store.url)})"
        )

    # -- lifecycle ------------------------------------------------------------------------

    def _start(self) -> None:
        with self._lifecycle:
            pid = os.getpid()
            if self._pid == pid:
                return
            if self._pid is not None:  # forked without our at-fork hook running
                self._reset_after_fork()  # the with-block still releases the old lock
            if self._core.closed:
                self._pid = pid
                return
            self._threads = [
                threading.Thread(
                    target=self._run, args=(index,), name=f"xpevents-batch-{index}", daemon=True
                )
                for index in range(self._workers)
            ]
            for thread in self._threads:
                thread.start()
            self._pid = pid

    def _notify_settled(self) -> None:
        with self._settled:
            self._settled.notify_all()

    def _flush_until(self, deadline: float) -> DispatchOutcome:
        core = self._core
        before = core.totals()
        called_at = time.time()
        pending = core.pending_since(called_at)
        if pending and self._pid != os.getpid() and not core.closed:
            self._start()
        with self._settled:
            self._flushing += 1
        self._wake.set()
        try:
            while pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._threads:
                    break
                with self._settled:
                    core.flush_waiters += 1
                    try:
                        self._settled.wait(min(remaining, 0.05))
                    finally:
                        core.flush_waiters -= 1
                pending = core.pending_since(called_at)
        finally:
            with self._settled:
                self._flushing -= 1
        return core.outcome_since(before, pending)

    # -- the sender loop ------------------------------------------------------------------

    def _run(self, index: int = 0) -> None:
        wake = self._wake
        while not self._stopping:
            if self._slots.stays_out(index, flushing=bool(self._flushing)):
                continue
            wake.clear()
            try:
                pause = self._step(index)
            except Exception:  # a bug must not kill the sender; leases expire and retry
                if self._stopping:  # close() gave up waiting and closed the spool under us
                    break
                logger.exception("BatchDispatcher sender error; continuing")
                pause = 0.1
            if pause > 0 and not self._stopping:
                wake.wait(pause)

    def _step(self, index: int = 0) -> float:
        """Send one batch if one is due; else return how long to sleep."""
        batch = self._core.next_batch(time.time(), bool(self._flushing), self._stopping)
        if isinstance(batch, float):
            return batch
        self._slots.begin(index)
        try:
            for request in batch:
                self._send(request)
        finally:
            self._slots.end(index)
        return 0.0

    def _send(self, request: Request) -> None:
        """POST one request and settle it (and the halves of a 413, depth first)."""
        core = self._core
        core.begin(request, time.time())
        response: ResponseLike | None = None
        error: BaseException | None = None
        try:
            response = send_sync(self._client, self._direct, request, self._timeout)
        except Exception as exc:
            error = exc
        except BaseException:
            core.abandon(request)
            raise
        for follow_up in core.settle(request, response, error, time.time()):
            self._send(follow_up)
