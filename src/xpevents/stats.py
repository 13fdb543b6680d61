"""Counters every dispatcher keeps, and the frozen snapshot ``stats()`` returns."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, int] = MappingProxyType({})


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
    callback_errors: int = 0
    last_error: str | None = None
    last_success_at: float | None = None
    spool_url: str = "memory://"
    durable: bool = False
    durability_suspended: bool = False
    spool_depth: int = 0
    spool_oldest_age: float | None = None
    dead_letters: Mapping[str, int] = field(default_factory=lambda: _EMPTY)

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
        self.callback_errors = 0
        self.last_error: str | None = None
        self.last_success_at: float | None = None

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
                callback_errors=self.callback_errors,
                last_error=self.last_error,
                last_success_at=self.last_success_at,
            )


@dataclass(frozen=True, slots=True)
class DispatchOutcome:
    """What ``flush()`` or ``close()`` achieved before returning.

    Attributes:
        delivered: visitors delivered since the call started.
        failed: visitors given up on since the call started, by reason.
        dropped: visitors dropped since the call started, by reason.
        pending: visitors still queued or in flight when the call returned (0 means
            everything enqueued before the call was settled).
    """

    delivered: int = 0
    failed: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    dropped: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    pending: int = 0

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
        }
