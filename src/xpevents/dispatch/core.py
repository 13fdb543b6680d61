"""The batching core shared by the threaded and the asyncio dispatcher.

:class:`DispatchCore` composes the stages of a batching dispatcher that are neither a
thread nor a coroutine, each in its own module:

* :class:`~xpevents.dispatch.enqueue.Enqueuer`: the ``dispatch_event`` hot path;
* the spool it opened (:func:`~xpevents.spool.opening.open_for_dispatch`);
* :class:`~xpevents.send.planner.Planner`: when a batch is due and its request bodies;
* :class:`~xpevents.send.settle.Settler`: what an answer means for the visitors
  (ack, retry schedule, dead letter), with the per-URL
  :class:`~xpevents.send.circuit.Circuits` and one classifier of answers
  (:mod:`xpevents.send.outcome`);
* the counters (:class:`~xpevents.stats.StatsRecorder`) and flush bookkeeping.

A driver (:class:`~xpevents.BatchDispatcher` with sender threads,
:class:`~xpevents.AsyncDispatcher` with tasks on an event loop) does the waiting, the
HTTP and the clock::

    item = core.poll(now, flushing=..., stopping=...)   # a Claim, or seconds to wait
    for request in core.plan(item, now):                # bodies, cut to the byte cap
        while request:
            core.begin(request, now)                    # counters; body compressed
            response = <POST request.url, request.content, request.headers>
            follow_ups = core.settle(request, response, error, now)  # 413 halves
            ...

``poll``, ``plan``, ``settle`` and the spool helpers call the spool: with a durable
spool they do SQLite/Redis I/O, so an asyncio driver runs them off the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from xpevents._internal.validate import positive_seconds
from xpevents.dispatch.drops import Drops
from xpevents.dispatch.enqueue import Enqueuer
from xpevents.dispatch.options import DispatchOptions
from xpevents.errors import ConfigError
from xpevents.send.circuit import Circuits
from xpevents.send.endpoint import EndpointRouter
from xpevents.send.outcome import Outcome, ResponseLike, of_error, of_response
from xpevents.send.planner import Planner, Request
from xpevents.send.settle import Settler
from xpevents.spool.base import BufferedSpool, Claim, ClaimQueue, Spool, spool_problem
from xpevents.spool.envelope import visitor_count
from xpevents.spool.opening import open_for_dispatch
from xpevents.spool.queue import SpoolQueue
from xpevents.stats import DispatchOutcome, DispatchStats, StatsRecorder, Totals

__all__ = ["DispatchCore", "Request", "finite_timeout"]

logger = logging.getLogger("xpevents.dispatch")


def _noop() -> None:
    return None


class DispatchCore:
    """Batching, retry and accounting, with no threads, no tasks and no HTTP calls.

    Args:
        options: the dispatcher's validated options.
        wake: called (from the producer's thread) when a sender should look at the
            queue now: a batch is full, or the queue was empty (to start the timer).
        settled: called after visitors were delivered, retried or dead-lettered while
            a flush waits (``flush_waiters > 0``).

    Raises:
        ConfigError: the options do not fit the spool; SpoolError: it cannot be opened.
    """

    def __init__(
        self,
        options: DispatchOptions,
        *,
        wake: Callable[[], object] = _noop,
        settled: Callable[[], object] = _noop,
    ) -> None:
        self.options = options
        self._settled = settled
        self.flush_waiters = 0
        self.recorder = StatsRecorder()
        self.drops = Drops(self.recorder, options.on_drop)
        opened = open_for_dispatch(
            options.spool,
            max_queue_events=options.max_queue_events,
            overflow=options.overflow,
            block_timeout=options.block_timeout,
            on_event_loop=options.on_event_loop,
            on_evict=self.drops.evicted,
            on_drop=self.drops.spool_dropped,
        )
        self.store: Spool = opened.store
        self.memory = opened.memory
        self.own_spool = opened.owned
        self.enqueuer = Enqueuer(
            owner=options.owner,
            store=self.store,
            memory=self.memory,
            recorder=self.recorder,
            drops=self.drops,
            batch_size=options.batch_size,
            overflow=options.overflow,
            wake=wake,
        )
        self.enqueue = self._refuse_disabled if options.disabled else self.enqueuer.enqueue
        self.queue: ClaimQueue = self.memory if self.memory is not None else SpoolQueue(self.store)
        self.circuits = Circuits(options.circuit_threshold, options.retry)
        self.planner = Planner(
            self.queue,
            self.store,
            options.router,
            self.circuits,
            batch_size=options.batch_size,
            flush_interval=options.flush_interval,
            max_batch_bytes=options.max_batch_bytes,
            max_records=max(options.batch_size, options.max_queue_events),
            lease=options.lease,
            gzip=options.gzip,
        )
        self.settler = Settler(
            self.store,
            self.recorder,
            options.retry,
            self.circuits,
            on_success=options.on_success,
            on_failure=options.on_failure,
            settled=self.notify_settled,
        )

    def _refuse_disabled(self, event: Any) -> None:
        # XPEVENTS_DISABLED: counted like any drop, silently (said once at construction)
        self.recorder.record_refused(visitor_count(getattr(event, "params", None)), "disabled")

    # -- state ------------------------------------------------------------------------

    @property
    def owner(self) -> str:
        """The dispatcher class, for messages."""
        return self.options.owner

    @property
    def router(self) -> EndpointRouter:
        """Maps each event's URL to the URL actually posted to."""
        return self.options.router

    @property
    def closed(self) -> bool:
        """True once the dispatcher is closing: new events are dropped (``"closed"``)."""
        return self.enqueuer.closed

    @closed.setter
    def closed(self, value: bool) -> None:
        self.enqueuer.closed = value

    def reset_after_fork(self) -> None:
        """In a forked child: zero the counters and start with an empty memory queue."""
        self.recorder.reset()
        self.enqueuer.reset_after_fork()
        self.drops.reset_after_fork()
        self.circuits.reset()
        self.flush_waiters = 0
        if self.memory is not None:
            self.memory.reset_after_fork()

    def set_hooks(
        self,
        *,
        wake: Callable[[], object] | None = None,
        settled: Callable[[], object] | None = None,
    ) -> None:
        """Replace the driver's wake-up and settled callbacks."""
        if wake is not None:
            self.enqueuer.wake = wake
        if settled is not None:
            self._settled = settled

    def notify_settled(self) -> None:
        """Tell a waiting flush that something settled."""
        if self.flush_waiters:
            self._settled()

    # -- the driver's steps -------------------------------------------------------------

    def poll(self, now: float, *, flushing: bool, stopping: bool) -> Claim | float:
        """A claimed batch that is due now, or how many seconds to wait (0: poll again)."""
        item = self.planner.poll(now, flushing=flushing, stopping=stopping)
        self.enqueuer.wake_depth = self.planner.wake_depth
        return item

    def plan(self, claim: Claim, now: float) -> list[Request]:
        """The requests that carry ``claim``; visitors that cannot be sent are dead-lettered."""
        requests, refused = self.planner.plan(claim, now)
        self.settler.refuse(refused, now)
        return requests

    def next_batch(self, now: float, flushing: bool, stopping: bool) -> float | list[Request]:
        """:meth:`poll` then :meth:`plan`: the requests of a due batch, or seconds to wait."""
        item = self.poll(now, flushing=flushing, stopping=stopping)
        if isinstance(item, float):
            return item
        return self.plan(item, now)

    def compress(self, request: Request) -> None:
        """Fill the request's content and headers (gzip when configured). Idempotent."""
        self.planner.compress(request)

    def begin(self, request: Request, now: float) -> None:
        """Compress (if not done yet) and count the attempt just before sending."""
        self.planner.compress(request)
        self.settler.begin(request, now)

    def abandon(self, request: Request) -> None:
        """The send was cancelled (shutdown): the lease expires, the visitors stay."""
        self.settler.abandon(request)

    def settle(
        self,
        request: Request,
        response: ResponseLike | None,
        error: BaseException | None,
        now: float,
    ) -> list[Request]:
        """Act on the answer (or the error) for ``request``; return follow-up requests.

        An unexpected exception from a user's client or transport is transient here:
        the visitors stay in the spool and are retried (see :mod:`xpevents.send.outcome`).
        """
        if response is not None:
            verdict = of_response(response, now=now)
        else:
            assert error is not None
            verdict = of_error(error, unexpected=Outcome.TRANSIENT)
        return self.settler.settle(request, verdict, now)

    # -- flush, close and stats ----------------------------------------------------------

    def totals(self) -> Totals:
        """The delivered/failed/dropped counters now."""
        return self.recorder.totals()

    def outcome_since(self, before: Totals, pending: int) -> DispatchOutcome:
        """What happened since ``before`` was read."""
        return self.recorder.outcome_since(before, pending)

    def pending_since(self, when: float) -> int:
        """Visitors enqueued at or before ``when`` and not settled (spool I/O if durable)."""
        memory = self.memory
        if memory is not None and memory.depth == 0:
            return 0
        return self.queue.pending_since(when)

    def snapshot(self, now: float) -> DispatchStats:
        """The counters as a :class:`DispatchStats` (spool I/O if durable)."""
        store = self.store
        spool_stats = store.stats(now=now)
        if self.memory is not None:
            # The memory spool's lock-free append is counted by the spool, not here.
            entries, visitors, depth = self.memory.counts()
        else:
            entries = visitors = 0
            depth = spool_stats.depth
        base = self.recorder.snapshot(queue_depth=depth)
        oldest = spool_stats.oldest_enqueued_at
        return replace(
            base,
            calls=base.calls + entries,
            visitors=base.visitors + visitors,
            enqueued=base.enqueued + visitors,
            circuits_open=self.circuits.open_count(now),
            spool_url=store.url,
            durable=store.durable,
            durability_suspended=isinstance(store, BufferedSpool) and store.fallback_active,
            spool_depth=spool_stats.depth,
            spool_oldest_age=None if oldest is None else max(0.0, now - oldest),
            dead_letters=spool_stats.dead_letters,
            lost=spool_stats.lost,
            spool_problem=spool_problem(store),
        )

    def discard_unsent(self) -> int:
        """At close, memory spool owned by us: drop what is left; return how many."""
        if self.memory is None or not self.own_spool:
            return 0
        leftover = self.memory.clear()
        if leftover:
            self.drops.unsent(leftover, self.owner)
        return len(leftover)

    def close_spool(self, timeout: float) -> None:
        """Commit what a durable front buffers (up to ``timeout``), close an owned spool."""
        if not self.own_spool:
            return
        try:
            if isinstance(self.store, BufferedSpool):
                self.store.flush_buffer(max(0.0, timeout))
            self.store.close()
        except Exception:
            logger.exception("closing the spool failed")


def finite_timeout(owner: str, timeout: object) -> float:
    """A finite, non-negative number of seconds for flush/close."""
    if timeout is None:
        raise ConfigError(
            f"{owner}(timeout=None): a finite number of seconds is required, so the call "
            "cannot hang; use e.g. timeout=10.0"
        )
    return positive_seconds("timeout", timeout, owner=owner, allow_zero=True)
