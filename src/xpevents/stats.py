"""Counters every dispatcher keeps, and the frozen snapshots ``stats()`` and ``flush()`` return.

:class:`StatsRecorder` is the one place where counters change: the dispatchers and the
send state machine call its ``record_*`` methods (each takes the lock once), and user
callbacks run through :meth:`StatsRecorder.run_callback`, which counts and logs what
they raise instead of letting it reach a sender or the caller.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, int] = MappingProxyType({})

logger = logging.getLogger("xpevents.dispatch")


@dataclass(frozen=True, slots=True)
class DispatchStats:
    """A point-in-time snapshot of a dispatcher's counters.

    Visitors are the unit of counting: an event API payload carrying N visitors
    counts N in ``visitors``, ``delivered``, ``failed`` and ``dropped``.

    Attributes:
        calls: ``dispatch_event`` calls received.
        visitors: visitors received through those calls.
        enqueued: visitors accepted into the queue (received minus those dropped at
            enqueue).
        attempts: HTTP requests made, first attempts and retries.
        retried: HTTP requests that were retries of an earlier failed attempt.
        delivered: visitors the endpoint accepted (2xx).
        failed: visitors given up on, by reason (``http_400``, ``timeout``,
            ``network``, ``attempts_exhausted``...).
        dropped: visitors discarded without a delivery attempt, by reason
            (``queue_full``, ``closed``, ``serialize``...).
        queue_depth: visitors waiting to be sent (0 for a synchronous dispatcher).
        in_flight: requests being sent right now.
        circuits_open: target URLs whose circuit breaker currently holds sends back
            (consecutive failures, or a ``Retry-After`` still running).
        batches_sent: requests the endpoint accepted (2xx).
        bytes_sent: request body bytes of all attempts.
        splits: refused requests (400, 413, 422) split in two to isolate the visitor at
            fault, so the other visitors of the batch are still delivered.
        callback_errors: exceptions raised by user callbacks (caught and logged).
        last_error: a one-line description of the most recent failure, or ``None``.
        last_success_at: wall-clock time (``time.time()``) of the last 2xx, or ``None``.
        spool_url: the spool behind the dispatcher (``memory://`` for none).
        durable: True when accepted visitors survive a crash (a durable spool).
        durability_suspended: True while a failing durable store is bypassed and
            visitors are held in memory only (``on_spool_error="memory"``).
        spool_depth: visitors in the spool (waiting, leased or retrying).
        spool_oldest_age: seconds since the oldest visitor in the spool was enqueued.
        dead_letters: visitors in the spool's dead letters, by reason.
        lost: visitors found lost after the fact, by reason (``redis_reset``: Redis
            came back without the spool's data; ``interval_window``: the uncommitted
            window of ``durability="interval"`` at a crash), as the spool reports them.
        spool_problem: why the spool refuses writes for good (its SQLite file was
            deleted or replaced under the process...), or ``None``.
    """

    calls: int = 0
    visitors: int = 0
    enqueued: int = 0
    attempts: int = 0
    retried: int = 0
    delivered: int = 0
    failed: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    dropped: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    queue_depth: int = 0
    in_flight: int = 0
    circuits_open: int = 0
    batches_sent: int = 0
    bytes_sent: int = 0
    splits: int = 0
    callback_errors: int = 0
    last_error: str | None = None
    last_success_at: float | None = None
    spool_url: str = "memory://"
    durable: bool = False
    durability_suspended: bool = False
    spool_depth: int = 0
    spool_oldest_age: float | None = None
    dead_letters: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    lost: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    spool_problem: str | None = None

    @property
    def failed_total(self) -> int:
        """All visitors that failed, whatever the reason."""
        return sum(self.failed.values())

    @property
    def dropped_total(self) -> int:
        """All visitors that were dropped, whatever the reason."""
        return sum(self.dropped.values())

    def as_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable dict of every field."""
        return {
            f.name: dict(value) if isinstance(value, Mapping) else value
            for f in fields(self)
            for value in (getattr(self, f.name),)
        }

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"DispatchStats({shown})"


class Totals:
    """Counters read at the start and end of a flush to report what it achieved."""

    __slots__ = ("delivered", "dropped", "failed")

    def __init__(self, delivered: int, failed: Counter[str], dropped: Counter[str]) -> None:
        self.delivered = delivered
        self.failed = failed
        self.dropped = dropped


class StatsRecorder:
    """Thread-safe mutable counters behind :class:`DispatchStats`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.visitors = 0
        self.enqueued = 0
        self.attempts = 0
        self.retried = 0
        self.delivered = 0
        self.failed: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.in_flight = 0
        self.batches_sent = 0
        self.bytes_sent = 0
        self.splits = 0
        self.callback_errors = 0
        self.last_error: str | None = None
        self.last_success_at: float | None = None

    def reset(self) -> None:
        """Zero every counter, with a fresh lock (a forked child)."""
        self.__init__()  # type: ignore[misc]

    def record_call(self, visitors: int) -> None:
        """A ``dispatch_event`` call carrying ``visitors`` (accepted or not, decided later)."""
        with self.lock:
            self.calls += 1
            self.visitors += visitors

    def record_refused(self, visitors: int, reason: str, error: str | None = None) -> None:
        """A call whose visitors were dropped at once (closed, invalid, queue full...)."""
        with self.lock:
            self.calls += 1
            self.visitors += visitors
            self.dropped[reason] += visitors
            if error is not None:
                self.last_error = error

    def record_dropped(self, reason: str, visitors: int) -> None:
        """Visitors dropped after they were accepted (evicted, lost at close...)."""
        with self.lock:
            self.dropped[reason] += visitors

    def record_attempt(self, nbytes: int, *, retry: bool) -> None:
        """A request is about to be sent (it is in flight until :meth:`record_done`)."""
        with self.lock:
            self.attempts += 1
            self.retried += retry
            self.bytes_sent += nbytes
            self.in_flight += 1

    def record_done(self) -> None:
        """A request in flight ended (answered, failed or abandoned)."""
        with self.lock:
            self.in_flight -= 1

    def record_delivered(self, visitors: int, *, now: float) -> None:
        """One request delivered ``visitors``."""
        with self.lock:
            self.delivered += visitors
            self.batches_sent += 1
            self.last_success_at = now

    def record_split(self) -> None:
        """A refused request was split in two to isolate the visitor at fault."""
        with self.lock:
            self.splits += 1

    def record_failed(self, reason: str, visitors: int, error: str) -> None:
        """Visitors given up on (dead-lettered), with the error that ended them."""
        with self.lock:
            self.failed[reason] += visitors
            self.last_error = error

    def record_error(self, error: str) -> None:
        """The latest failure, when nothing was lost (a retry is scheduled)."""
        with self.lock:
            self.last_error = error

    def run_callback(self, callback: Callable[..., object] | None, *args: object) -> None:
        """Call a user callback; what it raises is logged and counted, never raised."""
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            with self.lock:
                self.callback_errors += 1
            logger.exception("dispatcher callback %r raised; delivery goes on", callback)

    def totals(self) -> Totals:
        """The delivered/failed/dropped counters now."""
        with self.lock:
            return Totals(self.delivered, Counter(self.failed), Counter(self.dropped))

    def outcome_since(self, before: Totals, pending: int) -> DispatchOutcome:
        """What happened since ``before`` was read, as a :class:`DispatchOutcome`."""
        after = self.totals()
        return DispatchOutcome(
            delivered=after.delivered - before.delivered,
            failed=MappingProxyType(dict(after.failed - before.failed)),
            dropped=MappingProxyType(dict(after.dropped - before.dropped)),
            pending=pending,
            delivered_total=after.delivered,
        )

    def snapshot(self, *, queue_depth: int = 0) -> DispatchStats:
        """Copy the counters into a frozen :class:`DispatchStats`."""
        with self.lock:
            return DispatchStats(
                calls=self.calls,
                visitors=self.visitors,
                enqueued=self.enqueued,
                attempts=self.attempts,
                retried=self.retried,
                delivered=self.delivered,
                failed=MappingProxyType(dict(self.failed)),
                dropped=MappingProxyType(dict(self.dropped)),
                queue_depth=queue_depth,
                in_flight=self.in_flight,
                batches_sent=self.batches_sent,
                bytes_sent=self.bytes_sent,
                splits=self.splits,
                callback_errors=self.callback_errors,
                last_error=self.last_error,
                last_success_at=self.last_success_at,
            )


@dataclass(frozen=True, slots=True)
class DispatchOutcome:
    """What ``flush()`` or ``close()`` achieved before returning.

    The first three count what happened **during** the call (a ``close()`` after most
    events were already sent reports few); ``delivered_total`` is the dispatcher's
    lifetime count, as ``stats().delivered``.

    Attributes:
        delivered: visitors delivered since the call started.
        failed: visitors given up on since the call started, by reason.
        dropped: visitors dropped since the call started, by reason.
        pending: visitors still queued or in flight when the call returned (0 means
            everything enqueued before the call was settled).
        delivered_total: visitors delivered over the dispatcher's lifetime.
    """

    delivered: int = 0
    failed: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    dropped: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    pending: int = 0
    delivered_total: int = 0

    def __repr__(self) -> str:
        return (
            f"DispatchOutcome(delivered={self.delivered}, failed={dict(self.failed)}, "
            f"dropped={dict(self.dropped)}, pending={self.pending}, "
            f"delivered_total={self.delivered_total})"
        )

    @property
    def complete(self) -> bool:
        """True when nothing was left pending."""
        return self.pending == 0

    def as_dict(self) -> dict[str, Any]:
        """A plain dict of every field."""
        return {
            "delivered": self.delivered,
            "failed": dict(self.failed),
            "dropped": dict(self.dropped),
            "pending": self.pending,
            "delivered_total": self.delivered_total,
        }
