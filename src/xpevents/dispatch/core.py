"""The sans-I/O core shared by the batching dispatchers (threads and asyncio).

:class:`DispatchCore` owns everything about a batching dispatcher that is neither a
thread nor a coroutine: argument checks, the spool (memory or durable, opened here),
the enqueue hot path (encode once, envelope cache, bounded queue, drop accounting),
deciding when a batch is due, turning a claim into request bodies (byte cap, 413 and
API-limit splits), and what an answer means for the visitors it carried (ack, retry
schedule with backoff and ``Retry-After``, dead letter, circuit breaker per URL,
counters and user callbacks).

A driver (:class:`~xpevents.BatchDispatcher` with sender threads,
:class:`~xpevents.AsyncDispatcher` with tasks on an event loop) only does the I/O and
the waiting::

    item = core.poll(now, flushing=..., stopping=...)   # a Claim, or seconds to wait
    for request in core.plan(item, now):                # bodies, cut to the byte cap
        while request:
            core.begin(request)                         # counters; body compressed
            response = <POST request.url, request.content, request.headers>
            follow_ups = core.settle(request, response, error)  # 413 halves, if any
            ...

``poll``, ``plan``, ``settle`` and the spool helpers call the spool: with a durable
spool they do SQLite/Redis I/O, so an asyncio driver runs them off the event loop.
The core never sends HTTP, never sleeps and never starts a thread.
"""

from __future__ import annotations

import gzip as _gzip
import logging
import operator
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from types import MappingProxyType
from typing import Any, Final

import httpx
import msgspec

from xpevents._internal.cache import BoundedCache
from xpevents._internal.ratelimit import LogEvery
from xpevents._internal.validate import choice, optional_callable, positive_int, positive_seconds
from xpevents.errors import ConfigError, DispatchError
from xpevents.events.model import DEFAULT_HEADERS
from xpevents.send.endpoint import EndpointRouter, validate_url
from xpevents.send.retry import Outcome, RetryPolicy, classify_status
from xpevents.send.retry import parse_retry_after as _parse_retry_after
from xpevents.spool.base import Claim, Spool, SpoolRecord
from xpevents.spool.envelope import (
    API_MAX_BYTES,
    Envelope,
    batch_envelope,
    encode,
    parse_envelope,
    raw_envelope,
)
from xpevents.spool.memory import OVERFLOW_POLICIES, MemorySpool
from xpevents.stats import DispatchOutcome, DispatchStats, StatsRecorder

__all__ = ["DispatchCore", "Request", "Totals", "count_visitors", "finite_timeout"]

logger = logging.getLogger("xpevents.dispatch")

_EXCERPT: Final = 500
IDLE_POLL: Final = 1.0
"""Seconds a sender waits when nothing is queued (it is woken on enqueue anyway)."""
_PROBE_WAIT: Final = 0.25
"""Seconds a batch waits while another batch probes a half-open circuit."""
_DROP_LOG_EVERY: Final = 10
_GZIP_HEADERS: Final = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
_JSON_HEADERS: Final = {"Content-Type": "application/json"}
_ENVELOPE_KEYS: Final = (
    "account_id",
    "project_id",
    "revision",
    "client_name",
    "client_version",
    "anonymize_ip",
    "enrich_decisions",
)
_head_values: Final = operator.itemgetter(*_ENVELOPE_KEYS)
_GIVE_UP: Final = {
    "attempts_exhausted": "no attempts left",
    "retry_age_exceeded": "retrying longer than max_retry_age",
}


def _noop() -> None:
    return None


class _Circuit:
    """Health of one target URL (guarded by the core's circuit lock)."""

    __slots__ = ("episode_started", "failures", "open_until", "opens", "probing")

    def __init__(self) -> None:
        self.failures = 0  # consecutive failed requests
        self.opens = 0  # consecutive times the circuit opened
        self.open_until = 0.0  # no request before this (wall clock)
        self.probing = False  # a half-open probe is in flight
        self.episode_started = 0.0


class Totals:
    """Counters read at the start and end of a flush to report what it achieved."""

    __slots__ = ("delivered", "dropped", "failed")

    def __init__(self, delivered: int, failed: Counter[str], dropped: Counter[str]) -> None:
        self.delivered = delivered
        self.failed = failed
        self.dropped = dropped


class Request:
    """One HTTP request to make: visitors of one envelope, their body, its headers.

    Built by :meth:`DispatchCore.plan` (and by :meth:`DispatchCore.settle` for the
    halves of a batch refused with 413); ``content`` and ``headers`` are filled by
    :meth:`DispatchCore.begin` (or :meth:`DispatchCore.compress` beforehand).
    """

    __slots__ = (
        "body",
        "claim",
        "content",
        "envelope",
        "headers",
        "ids",
        "started",
        "visitors",
    )

    def __init__(
        self,
        envelope: Envelope,
        ids: list[int | str],
        visitors: list[bytes],
        claim: Claim,
        body: bytes,
    ) -> None:
        self.envelope = envelope
        self.ids = ids
        self.visitors = visitors
        self.claim = claim
        self.body = body
        self.content: bytes | None = None
        self.headers: dict[str, str] = _JSON_HEADERS
        self.started = 0.0

    @property
    def method(self) -> str:
        """``"POST"`` (``"GET"`` only for a raw GET event)."""
        return self.envelope.method

    @property
    def url(self) -> str:
        """The target URL."""
        return self.envelope.url

    def params(self) -> Any:
        """Query parameters of a raw GET event."""
        return msgspec.json.decode(self.body)


class DispatchCore:
    """Batching, retry and accounting, with no threads, no tasks and no HTTP.

    The keyword arguments are the shared options of the batching dispatchers (see
    :class:`~xpevents.BatchDispatcher` for their meaning); ``owner`` names the
    dispatcher class in error messages.

    Args:
        wake: called (from the producer's thread) when a sender should look at the
            queue now: a batch is full, or the queue was empty (to start the timer).
        settled: called after visitors were delivered, retried or dead-lettered while
            a flush waits (``flush_waiters > 0``).
        caller_io: False for an event-loop driver: ``append`` must never do I/O, so a
            durable spool is group-committed by its background thread only
            (``durability="interval"`` required, no inline backpressure commit) and
            ``overflow="block"`` is refused.

    Raises:
        ConfigError: an argument is invalid; the message names it and the fix.
    """

    def __init__(
        self,
        *,
        owner: str,
        endpoint: str | None,
        batch_size: int,
        flush_interval: float,
        max_batch_bytes: int,
        max_queue_events: int,
        overflow: str,
        block_timeout: float,
        retry: RetryPolicy,
        gzip: bool,
        lease: float,
        circuit_threshold: int,
        on_drop: Callable[[Any, str], object] | None,
        on_success: Callable[[list[bytes]], object] | None,
        on_failure: Callable[[list[bytes], DispatchError], object] | None,
        spool: str | os.PathLike[str] | Spool | None,
        durability: str,
        commit_interval: float,
        on_spool_error: str,
        max_spool_events: int | None,
        max_spool_bytes: int | None,
        max_event_age: float | None,
        wake: Callable[[], object] = _noop,
        settled: Callable[[], object] = _noop,
        caller_io: bool = True,
    ) -> None:
        self.owner = owner
        self.batch_size = positive_int("batch_size", batch_size, owner=owner)
        self.flush_interval = positive_seconds("flush_interval", flush_interval, owner=owner)
        self.max_batch_bytes = positive_int(
            "max_batch_bytes", max_batch_bytes, owner=owner, minimum=1024
        )
        if self.max_batch_bytes > API_MAX_BYTES:
            raise ConfigError(
                f"{owner}(max_batch_bytes={max_batch_bytes!r}): must be at most "
                f"{API_MAX_BYTES} (the event API's request limit)"
            )
        self.max_queue_events = positive_int("max_queue_events", max_queue_events, owner=owner)
        choice("overflow", overflow, OVERFLOW_POLICIES, owner=owner)
        if overflow == "block" and not caller_io:
            raise ConfigError(
                f"{owner}(overflow='block'): dispatch_event runs on the event loop and "
                "must never wait; use 'drop_newest' or 'drop_oldest' and a larger "
                "max_queue_events (drops are counted in stats().dropped)"
            )
        self.overflow = overflow
        self.block_timeout = positive_seconds(
            "block_timeout", block_timeout, owner=owner, allow_zero=True
        )
        if not isinstance(retry, RetryPolicy):
            raise ConfigError(
                f"{owner}(retry={retry!r}): expected an xpevents.RetryPolicy, "
                f"got {type(retry).__name__}"
            )
        if not isinstance(gzip, bool):
            raise ConfigError(f"{owner}(gzip={gzip!r}): expected True or False")
        self.lease = positive_seconds("lease", lease, owner=owner)
        self.circuit_threshold = positive_int("circuit_threshold", circuit_threshold, owner=owner)
        self.on_drop = optional_callable("on_drop", on_drop, owner=owner)
        self.on_success = optional_callable("on_success", on_success, owner=owner)
        self.on_failure = optional_callable("on_failure", on_failure, owner=owner)
        self.router = EndpointRouter(endpoint)
        self.retry = retry
        self.gzip = gzip
        self._wake = wake
        self._settled = settled
        self.caller_io = caller_io
        self.store, self.mem, self.own_spool = self._open_spool(
            spool,
            durability=durability,
            commit_interval=commit_interval,
            on_spool_error=on_spool_error,
            max_spool_events=max_spool_events,
            max_spool_bytes=max_spool_bytes,
            max_event_age=max_event_age,
        )
        self.max_records = max(self.batch_size, self.max_queue_events)
        self._envelopes: BoundedCache[tuple[Any, ...], tuple[bytes, Any, Any]] = BoundedCache(256)
        self._parsed: BoundedCache[bytes, Envelope] = BoundedCache(256)
        self.closed = False
        self.init_runtime()

    # -- construction ----------------------------------------------------------------

    def _open_spool(
        self,
        spool: str | os.PathLike[str] | Spool | None,
        *,
        durability: str,
        commit_interval: float,
        on_spool_error: str,
        max_spool_events: int | None,
        max_spool_bytes: int | None,
        max_event_age: float | None,
    ) -> tuple[Spool, MemorySpool | None, bool]:
        from xpevents.spool import open_spool

        owner = self.owner
        if durability not in ("always", "interval"):
            raise ConfigError(
                f"{owner}(durability={durability!r}): expected 'always' or 'interval'"
            )
        if durability == "always" and not self.caller_io:
            raise ConfigError(
                f"{owner}(durability='always'): a write-through commit would run on the "
                "event loop; use durability='interval' (group commit from a background "
                "thread every commit_interval seconds; `await flush()` waits for it)"
            )
        if on_spool_error not in ("memory", "drop"):
            raise ConfigError(
                f"{owner}(on_spool_error={on_spool_error!r}): expected 'memory' or 'drop'"
            )
        positive_seconds("commit_interval", commit_interval, owner=owner)
        if isinstance(spool, MemorySpool):
            if spool.overflow == "block" and not self.caller_io:
                raise ConfigError(
                    f"{owner}(spool={spool!r}): a MemorySpool with overflow='block' "
                    "would block the event loop; use 'drop_newest' or 'drop_oldest'"
                )
            spool.on_evict = self.evicted
            return spool, spool, False
        if spool is None or spool == "memory://":
            memory = MemorySpool(
                self.max_queue_events,
                self.overflow,
                self.block_timeout,
                on_evict=self.evicted,
            )
            return memory, memory, True
        owned = not isinstance(spool, Spool)
        options: dict[str, Any] = {
            name: value
            for name, value in (
                ("max_spool_events", max_spool_events),
                ("max_spool_bytes", max_spool_bytes),
                ("max_event_age", max_event_age),
            )
            if value is not None
        }
        store = open_spool(spool, **options)
        if not store.durable:
            return store, None, owned
        from xpevents.spool.front import SpoolFront

        extra: dict[str, Any] = {}
        if not self.caller_io:
            # Never commit inline from append (that would be the event loop): beyond
            # max_buffer_events the oldest buffered visitors are dropped and counted.
            extra["max_uncommitted"] = self.max_queue_events + 1
        front: Spool = SpoolFront(
            store,
            durability=durability,
            commit_interval=commit_interval,
            on_spool_error=on_spool_error,
            max_buffer_events=self.max_queue_events,
            on_drop=self.spool_dropped,
            **extra,
        )
        return front, None, True

    def init_runtime(self) -> None:
        """Counters and state that do not survive a fork."""
        self.stats = StatsRecorder()
        self.wake_at = 1
        self._unsignalled = 0
        self.flush_waiters = 0
        self._circuit_lock = threading.Lock()
        self._circuits: dict[str, _Circuit] = {}
        self._drop_log = LogEvery(_DROP_LOG_EVERY)

    def reset_after_fork(self) -> None:
        """In a forked child: zero the counters and start with an empty memory queue."""
        self.init_runtime()
        if self.mem is not None:
            self.mem.reset_after_fork()

    def set_hooks(
        self,
        *,
        wake: Callable[[], object] | None = None,
        settled: Callable[[], object] | None = None,
    ) -> None:
        """Replace the driver's wake-up and settled callbacks."""
        if wake is not None:
            self._wake = wake
        if settled is not None:
            self._settled = settled

    # -- enqueue (the caller's hot path) ---------------------------------------------

    def enqueue(self, event: Any) -> None:
        """Queue ``event``'s visitors; wake a sender when needed. Never raises."""
        try:
            if self.closed:
                self.refuse(event, count_visitors(event), "closed")
                return
            try:
                params = event.params
                url = event.url
                verb = event.http_verb
            except AttributeError:
                self.refuse(event, 1, "invalid_event")
                return
            visitors = params.get("visitors") if type(params) is dict else None
            if type(visitors) is list and visitors and verb == "POST":
                envelope = None
                key: tuple[Any, ...] | None = None
                if len(params) == 8:
                    try:
                        head = _head_values(params)
                        key = (url, head)
                        cached = self._envelopes.get(key)  # TypeError: unhashable value
                    except (KeyError, TypeError):
                        key = cached = None
                    # 1 == True: reuse only when the two flags are the very same objects
                    if cached is not None and cached[1] is head[5] and cached[2] is head[6]:
                        envelope = cached[0]
                if envelope is None:
                    envelope = self._new_envelope(key, url, params, event, len(visitors))
                    if envelope is None:
                        return
                try:
                    encoded = [encode(visitor) for visitor in visitors]
                except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
                    self.refuse(event, len(visitors), "serialize", exc)
                    return
            else:
                envelope, encoded = self._raw(event, url, verb, params)
                if envelope is None:
                    return
            mem = self.mem
            if mem is not None:
                size = mem.offer(envelope, encoded, time.time())
                if size:
                    if size == 1 or size == self.wake_at or len(encoded) > 1:
                        self._wake()
                else:
                    self.refuse(
                        event,
                        len(encoded),
                        "block_timeout" if self.overflow == "block" else "queue_full",
                    )
            else:
                self._append_to_store(event, envelope, encoded)
        except Exception as exc:  # never let a dispatcher bug reach the caller
            try:
                self.refuse(event, 1, "internal_error", exc)
            except Exception:  # pragma: no cover
                pass

    def _new_envelope(
        self,
        key: tuple[Any, ...] | None,
        url: object,
        params: dict[str, Any],
        event: Any,
        visitors: int,
    ) -> bytes | None:
        try:
            validate_url(url, argument="event.url")
        except ConfigError as exc:
            self.refuse(event, visitors, "invalid_url", exc)
            return None
        assert isinstance(url, str)
        try:
            # The event's own URL is stored; `endpoint` is applied when sending, so a
            # spooled backlog follows a changed endpoint after a restart.
            envelope = batch_envelope(url, params)
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            self.refuse(event, visitors, "serialize", exc)
            return None
        if key is not None:
            self._envelopes.put(key, (envelope, key[1][5], key[1][6]))
        return envelope

    def _raw(
        self, event: Any, url: object, verb: object, params: Any
    ) -> tuple[bytes | None, list[bytes]]:
        """A payload that is not in the event API format: one unit, sent as-is."""
        try:
            validate_url(url, argument="event.url")
        except ConfigError as exc:
            self.refuse(event, 1, "invalid_url", exc)
            return None, []
        assert isinstance(url, str)
        method = verb.upper() if isinstance(verb, str) else verb
        if method not in ("POST", "GET") or (method == "GET" and not isinstance(params, dict)):
            self.refuse(event, 1, "invalid_event", ValueError(f"http_verb={verb!r}"))
            return None, []
        try:
            headers = getattr(event, "headers", None)
            header_map = {str(k): str(v) for k, v in (headers or DEFAULT_HEADERS).items()}
            body = encode(params)
        except (AttributeError, TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            self.refuse(event, 1, "serialize", exc)
            return None, []
        return raw_envelope(method, url, header_map), [body]

    def _append_to_store(self, event: Any, envelope: bytes, encoded: list[bytes]) -> None:
        """The path for a spool that is not the memory spool (durable or custom)."""
        n = len(encoded)
        try:
            self.store.append([(envelope, visitor) for visitor in encoded], now=time.time())
        except Exception as exc:
            self.refuse(event, n, "spool_error", exc)
            return
        stats = self.stats
        with stats.lock:
            stats.calls += 1
            stats.visitors += n
            stats.enqueued += n
            self._unsignalled += n
            wake = self._unsignalled == n or self._unsignalled >= self.batch_size
            if wake:
                self._unsignalled = 0
        if wake:
            self._wake()

    # -- drops ------------------------------------------------------------------------

    def refuse(self, event: Any, visitors: int, reason: str, exc: Exception | None = None) -> None:
        """Count an event refused at enqueue, log it (rate-limited), call ``on_drop``."""
        stats = self.stats
        with stats.lock:
            stats.calls += 1
            stats.visitors += visitors
            stats.dropped[reason] += visitors
            if exc is not None:
                stats.last_error = f"event dropped ({reason}): {exc}"
        self._log_drop(reason, exc)
        self.callback(self.on_drop, event, reason)

    def evicted(self, visitor: bytes, reason: str) -> None:
        """A queued visitor was evicted (``drop_oldest``)."""
        self.count_dropped(1, reason)
        self._log_drop(reason, None)
        self.callback(self.on_drop, visitor, reason)

    def _log_drop(self, reason: str, exc: Exception | None) -> None:
        """One warning per reason and episode (at most one per 10 s), not per event."""
        if not self._drop_log.due(reason):
            return
        detail = f": {exc}" if exc is not None else ""
        logger.warning(
            "event dropped (%s)%s; drops are counted in stats().dropped (logged at most "
            "every %d s per reason)",
            reason,
            detail,
            _DROP_LOG_EVERY,
        )

    def spool_dropped(self, reason: str, count: int) -> None:
        """``SpoolFront``'s drop report."""
        self.count_dropped(count, reason)

    def count_dropped(self, count: int, reason: str) -> None:
        """Add ``count`` visitors to ``dropped[reason]``."""
        with self.stats.lock:
            self.stats.dropped[reason] += count

    def discard_unsent(self) -> int:
        """At close, memory spool owned by us: drop what is left; return how many."""
        if self.mem is None or not self.own_spool:
            return 0
        leftover = self.mem.clear()
        if leftover:
            logger.warning(
                "%s closed with %d visitor(s) unsent: they are lost", self.owner, len(leftover)
            )
            self.count_dropped(len(leftover), "unsent_at_close")
            for visitor in leftover:
                self.callback(self.on_drop, visitor, "unsent_at_close")
        return len(leftover)

    def close_spool(self, timeout: float) -> None:
        """Commit what a durable front buffers (up to ``timeout``), close an owned spool."""
        if not self.own_spool:
            return
        try:
            flush_buffer = getattr(self.store, "flush_buffer", None)
            if flush_buffer is not None:
                flush_buffer(max(0.0, timeout))
            self.store.close()
        except Exception:
            logger.exception("closing the spool failed")

    # -- what is due -------------------------------------------------------------------

    def poll(self, now: float, *, flushing: bool, stopping: bool) -> Claim | float:
        """A claimed batch that is due now, or how many seconds to wait (0: poll again)."""
        mem = self.mem
        if mem is not None:
            count, oldest, next_retry = mem.waiting(now=now)
        else:
            count, oldest, next_retry = self._store_waiting(now)
        if not count:
            self.wake_at = 1
            return IDLE_POLL if next_retry is None else min(IDLE_POLL, next_retry - now)
        due_at = (oldest if oldest is not None else now) + self.flush_interval
        if count < self.batch_size and not flushing and due_at > now and not stopping:
            self.wake_at = max(1, self.batch_size - count)
            return due_at - now
        claim = self._claim(now)
        if claim is None:
            return 0.0
        return claim

    def _store_waiting(self, now: float) -> tuple[int, float | None, float | None]:
        store = self.store
        due = store.next_due_at(now=now)
        if due is None:
            return 0, None, None
        if due > now:
            return 0, None, due
        stats = store.stats(now=now)
        return max(1, stats.depth - stats.leased), stats.oldest_enqueued_at, None

    def _claim(self, now: float) -> Claim | None:
        mem = self.mem
        if mem is not None:
            return mem.claim_batch(
                max_records=self.max_records,
                max_bytes=self.max_batch_bytes,
                lease=self.lease,
                now=now,
            )
        records: list[SpoolRecord] = self.store.claim(
            max_records=self.max_records,
            max_bytes=self.max_batch_bytes,
            lease=self.lease,
            now=now,
        )
        if not records:
            return None
        firsts = [r.first_attempt_at for r in records if r.first_attempt_at is not None]
        return Claim(
            records[0].envelope,
            [r.id for r in records],
            [r.visitor for r in records],
            max(r.attempts for r in records),
            min(firsts) if firsts else None,
            [r.enqueued_at for r in records],
        )

    def _envelope(self, envelope: bytes) -> Envelope | None:
        parsed = self._parsed.get(envelope)
        if parsed is None:
            try:
                parsed = parse_envelope(envelope)
            except ValueError:
                return None
            target = self.router.route(parsed.url)
            if target != parsed.url:
                parsed = replace(parsed, url=target)
            self._parsed.put(envelope, parsed)
        return parsed

    # -- claim -> requests --------------------------------------------------------------

    def plan(self, claim: Claim, now: float) -> list[Request]:
        """The requests that carry ``claim`` (none when it was put back or failed)."""
        requests: list[Request] = []
        envelope = self._envelope(claim.envelope)
        if envelope is None:
            self.dead_letter(
                claim.ids,
                claim.visitors,
                DispatchError("unreadable envelope in the spool", reason="invalid_envelope"),
            )
            return requests
        wait_until = self._circuit_gate(envelope.url, now)
        if wait_until is not None:
            # The target is failing: put the batch back, untouched, until the circuit
            # lets a probe through. This is not an attempt.
            self.store.retry(
                claim.ids,
                attempts=claim.attempts,
                first_attempt_at=claim.first_attempt_at or now,
                next_attempt_at=wait_until,
            )
            return requests
        if not envelope.batchable:
            for index, record_id in enumerate(claim.ids):
                self._prepare(envelope, [record_id], [claim.visitors[index]], claim, requests)
            return requests
        ids, visitors = claim.ids, claim.visitors
        budget = self.max_batch_bytes - envelope.overhead()
        size = 0
        cut = len(visitors)
        for index, visitor in enumerate(visitors):
            size += len(visitor) + (1 if index else 0)
            if size > budget and index:
                cut = index
                break
        if cut < len(visitors):
            self.store.retry(
                ids[cut:],
                attempts=claim.attempts,
                first_attempt_at=claim.first_attempt_at or now,
                next_attempt_at=now,
            )
            ids, visitors = ids[:cut], visitors[:cut]
        self._prepare(envelope, ids, visitors, claim, requests)
        return requests

    def _prepare(
        self,
        envelope: Envelope,
        ids: list[int | str],
        visitors: list[bytes],
        claim: Claim,
        out: list[Request],
    ) -> None:
        body = envelope.body(visitors)
        if len(body) > API_MAX_BYTES:
            if len(visitors) > 1:
                half = len(visitors) // 2
                self._prepare(envelope, ids[:half], visitors[:half], claim, out)
                self._prepare(envelope, ids[half:], visitors[half:], claim, out)
                return
            self.dead_letter(
                ids,
                visitors,
                DispatchError(
                    f"a visitor of {len(body)} bytes exceeds the event API's "
                    f"{API_MAX_BYTES}-byte request limit",
                    reason="too_large",
                    url=envelope.url,
                ),
            )
            return
        out.append(Request(envelope, ids, visitors, claim, body))

    def compress(self, request: Request) -> None:
        """Fill ``request.content`` and ``headers`` (gzip when configured). Idempotent.

        CPU-bound for big gzip bodies: an event-loop driver may run it in a thread.
        """
        if request.content is not None:
            return
        envelope = request.envelope
        if self.gzip:
            request.content = _gzip.compress(request.body, compresslevel=1, mtime=0)
            request.headers = (
                _GZIP_HEADERS
                if envelope.batchable
                else {**envelope.headers, "Content-Encoding": "gzip"}
            )
        else:
            request.content = request.body
            request.headers = _JSON_HEADERS if envelope.batchable else envelope.headers

    # -- one request: before and after -------------------------------------------------

    def begin(self, request: Request) -> None:
        """Count the attempt (and the request in flight) just before sending it."""
        self.compress(request)
        assert request.content is not None
        request.started = time.time()
        stats = self.stats
        with stats.lock:
            stats.attempts += 1
            stats.retried += request.claim.attempts > 0
            stats.bytes_sent += len(request.content)
            stats.in_flight += 1

    def abandon(self, request: Request) -> None:
        """The send was cancelled (shutdown): the lease expires, the visitors stay."""
        with self.stats.lock:
            self.stats.in_flight -= 1

    def settle(
        self,
        request: Request,
        response: httpx.Response | None,
        error: BaseException | None = None,
    ) -> list[Request]:
        """Act on the answer (or the error) for ``request``; return follow-up requests.

        Delivered: ack, count, ``on_success``. 413: the two halves to send next (a lone
        visitor is dead-lettered). Other permanent answers: dead letter. Transient
        (408, 429, 5xx, timeout, network): schedule a retry in the spool with backoff,
        ``Retry-After`` honoured, or dead-letter when the retry policy gives up.
        """
        stats = self.stats
        with stats.lock:
            stats.in_flight -= 1
        status: int | None = None
        retry_after: float | None = None
        excerpt = ""
        if response is None:
            if isinstance(error, httpx.TimeoutException):
                outcome, reason, detail = Outcome.TRANSIENT, "timeout", f"timed out ({error!r})"
            elif isinstance(error, httpx.TransportError):
                outcome, reason = Outcome.TRANSIENT, "network"
                detail = f"network error ({error!r})"
            else:  # a user-supplied client or transport misbehaving
                outcome, reason = Outcome.TRANSIENT, "error"
                detail = f"unexpected error ({error!r})"
        else:
            status = response.status_code
            outcome = classify_status(status)
            reason = f"http_{status}"
            detail = f"HTTP {status}"
            if outcome is not Outcome.DELIVERED:
                try:
                    excerpt = response.text[:_EXCERPT]
                except Exception:  # a streamed or undecodable body
                    excerpt = ""
                if outcome is Outcome.TRANSIENT:
                    retry_after = _parse_retry_after(response.headers.get("retry-after"))
        ids, visitors, claim = request.ids, request.visitors, request.claim
        url = request.envelope.url
        n = len(visitors)
        now = time.time()
        if outcome is Outcome.DELIVERED:
            self.store.ack(ids)
            with stats.lock:
                stats.delivered += n
                stats.batches_sent += 1
                stats.last_success_at = now
            self._circuit_result(url, now, ok=True)
            self.callback(self.on_success, visitors)
            self.notify_settled()
            return []
        attempts = claim.attempts + 1
        error_args: dict[str, Any] = {
            "url": url,
            "status": status,
            "response_excerpt": excerpt,
            "attempts": attempts,
        }
        if status == 413:
            self._circuit_result(url, now, ok=True)  # the endpoint is fine; the batch is big
            if n > 1:
                half = n // 2
                follow: list[Request] = []
                self._prepare(request.envelope, ids[:half], visitors[:half], claim, follow)
                self._prepare(request.envelope, ids[half:], visitors[half:], claim, follow)
                return follow
            self.dead_letter(
                ids,
                visitors,
                DispatchError(
                    f"a single visitor of {len(request.body)} bytes was refused with HTTP 413",
                    reason="http_413",
                    **error_args,
                ),
            )
            return []
        if outcome is Outcome.PERMANENT:
            self._circuit_result(url, now, ok=True)
            self.dead_letter(
                ids,
                visitors,
                DispatchError(
                    f"{n} visitor(s) to {url} refused: {detail}; not retried",
                    reason=reason,
                    **error_args,
                ),
            )
            return []
        first = claim.first_attempt_at if claim.first_attempt_at is not None else request.started
        delay = self.retry.next_delay(
            attempts=attempts, first_attempt_at=first, now=now, retry_after=retry_after
        )
        self._circuit_result(url, now, ok=False, retry_after=retry_after, detail=detail)
        with stats.lock:
            stats.last_error = f"request to {url} failed: {detail}"
        if isinstance(delay, str):
            why = _GIVE_UP.get(delay)
            if why is None:
                why = (
                    f"Retry-After {retry_after} s is over max_retry_after"
                    if delay == "retry_after_too_long"
                    else delay
                )
            self.dead_letter(
                ids,
                visitors,
                DispatchError(
                    f"{n} visitor(s) to {url} given up after {attempts} attempt(s): "
                    f"{detail}; {why}",
                    reason=delay,
                    **error_args,
                ),
            )
            return []
        self.store.retry(
            ids, attempts=attempts, first_attempt_at=first, next_attempt_at=now + delay
        )
        self.notify_settled()
        return []

    def dead_letter(
        self, ids: list[int | str], visitors: list[bytes], error: DispatchError
    ) -> None:
        """Move visitors to the spool's dead letters; count, log and report them."""
        self.store.dead_letter(ids, reason=error.reason, now=time.time())
        with self.stats.lock:
            self.stats.failed[error.reason] += len(ids)
            self.stats.last_error = str(error)
        logger.warning("%s (dead-lettered)", error)
        self.callback(self.on_failure, visitors, error)
        self.notify_settled()

    def notify_settled(self) -> None:
        """Tell a waiting flush that something settled."""
        if self.flush_waiters:
            self._settled()

    # -- circuit breaker -------------------------------------------------------------------

    def _circuit_gate(self, url: str, now: float) -> float | None:
        """``None`` if a request to ``url`` may go now, else when to try again."""
        with self._circuit_lock:
            circuit = self._circuits.get(url)
            if circuit is None:
                return None
            if circuit.open_until > now:
                return circuit.open_until
            if circuit.failures >= self.circuit_threshold:
                if circuit.probing:
                    return now + _PROBE_WAIT
                circuit.probing = True  # half-open: this batch is the probe
            return None

    def _circuit_result(
        self,
        url: str,
        now: float,
        *,
        ok: bool,
        retry_after: float | None = None,
        detail: str = "",
    ) -> None:
        with self._circuit_lock:
            circuit = self._circuits.get(url)
            if ok:
                if circuit is None:
                    return
                del self._circuits[url]
                if circuit.failures:
                    logger.info(
                        "events to %s are delivered again after %d failed request(s) over %.1f s",
                        url,
                        circuit.failures,
                        now - circuit.episode_started,
                    )
                return
            if circuit is None:
                circuit = self._circuits[url] = _Circuit()
            circuit.probing = False
            circuit.failures += 1
            if circuit.failures == 1:
                circuit.episode_started = now
                logger.warning(
                    "events to %s are failing (%s); retrying with backoff "
                    "(one line per episode; see stats())",
                    url,
                    detail,
                )
            if circuit.failures >= self.circuit_threshold:
                circuit.opens += 1
                retry = self.retry
                ceiling = min(
                    retry.backoff_max, retry.backoff_base * 2.0 ** min(circuit.opens - 1, 62)
                )
                circuit.open_until = max(
                    circuit.open_until, now + random.uniform(ceiling / 2, ceiling)
                )
            if retry_after:
                wait = min(retry_after, self.retry.max_retry_after)
                circuit.open_until = max(circuit.open_until, now + wait)

    def circuits_open(self, now: float) -> int:
        """Target URLs whose circuit currently holds sends back."""
        with self._circuit_lock:
            return sum(
                1
                for c in self._circuits.values()
                if c.failures >= self.circuit_threshold or c.open_until > now
            )

    # -- callbacks and accounting ------------------------------------------------------------

    def callback(self, callback: Callable[..., object] | None, *args: Any) -> None:
        """Call a user callback; an exception is logged and counted, never raised."""
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            with self.stats.lock:
                self.stats.callback_errors += 1
            logger.exception("dispatcher callback %r raised; delivery goes on", callback)

    def totals(self) -> Totals:
        """The delivered/failed/dropped counters now."""
        stats = self.stats
        with stats.lock:
            return Totals(stats.delivered, Counter(stats.failed), Counter(stats.dropped))

    def snapshot(self) -> DispatchStats:
        """The counters as a :class:`DispatchStats` (spool I/O if durable)."""
        now = time.time()
        spool_stats = self.store.stats(now=now)
        mem = self.mem
        if mem is not None:
            entries, visitors, depth = mem.counts()
        else:
            entries = visitors = 0
            depth = spool_stats.depth
        base = self.stats.snapshot(queue_depth=depth)
        oldest = spool_stats.oldest_enqueued_at
        return replace(
            base,
            calls=base.calls + entries,
            visitors=base.visitors + visitors,
            enqueued=base.enqueued + visitors,
            circuits_open=self.circuits_open(now),
            spool_url=self.store.url,
            durable=self.store.durable,
            durability_suspended=bool(getattr(self.store, "fallback_active", False)),
            spool_depth=spool_stats.depth,
            spool_oldest_age=None if oldest is None else max(0.0, now - oldest),
            dead_letters=spool_stats.dead_letters,
        )

    def outcome_since(self, before: Totals, pending: int) -> DispatchOutcome:
        """What happened since ``before`` was read, as a :class:`DispatchOutcome`."""
        after = self.totals()
        return DispatchOutcome(
            delivered=after.delivered - before.delivered,
            failed=MappingProxyType(dict(after.failed - before.failed)),
            dropped=MappingProxyType(dict(after.dropped - before.dropped)),
            pending=pending,
        )

    def pending_since(self, when: float) -> int:
        """Visitors enqueued at or before ``when`` and not settled (spool I/O if durable)."""
        mem = self.mem
        if mem is not None:
            return 0 if mem.depth == 0 else mem.pending_since(when)
        store_stats = self.store.stats(now=time.time())
        buffered = int(getattr(self.store, "buffered", 0) or 0)
        oldest = store_stats.oldest_enqueued_at
        if oldest is None or oldest > when:
            return buffered
        return store_stats.depth + buffered


def count_visitors(event: Any) -> int:
    """Visitors an event carries (1 when it is not an event API payload)."""
    try:
        visitors = event.params.get("visitors")
    except AttributeError:
        return 1
    return len(visitors) if isinstance(visitors, list) and visitors else 1


def finite_timeout(owner: str, timeout: object) -> float:
    """A finite, non-negative number of seconds for flush/close."""
    if timeout is None:
        raise ConfigError(
            f"{owner}(timeout=None): a finite number of seconds is required, so the call "
            "cannot hang; use e.g. timeout=10.0"
        )
    return positive_seconds("timeout", timeout, owner=owner, allow_zero=True)
