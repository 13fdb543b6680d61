"""The production dispatcher: queue in memory (or a durable spool), batch, send, retry.

``dispatch_event`` encodes each visitor once (msgspec), appends the bytes to a bounded
queue and returns: no I/O, no lock shared with a sender in the common case, no
exception. Sender threads (``max_concurrent_requests``, sharing one pooled
``httpx.Client``) claim the oldest visitors of one envelope, join them into one body
and POST it; retries are scheduled in the spool with exponential backoff and full
jitter, ``Retry-After`` honoured, and a circuit breaker per target URL keeps a failing
endpoint from being hammered or from holding up other targets.

See ``docs/batch.md`` for every option, the overflow policies and the lifecycle
(flush, close, atexit, fork, serverless).
"""

from __future__ import annotations

import atexit
import gzip as _gzip
import logging
import operator
import os
import random
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from types import MappingProxyType, TracebackType
from typing import Any, Final, Self

import httpx
import msgspec

from xpevents.dispatch.batching import (
    API_MAX_BYTES,
    Envelope,
    batch_envelope,
    encode,
    parse_envelope,
    raw_envelope,
)
from xpevents.dispatch.endpoint import EndpointRouter, validate_url
from xpevents.dispatch.retry import BACKGROUND_RETRY, Outcome, RetryPolicy, classify_status
from xpevents.dispatch.retry import parse_retry_after as _parse_retry_after
from xpevents.dispatch.stats import DispatchOutcome, DispatchStats, StatsRecorder
from xpevents.dispatch.validate import optional_callable, positive_int, positive_seconds
from xpevents.errors import ConfigError, DispatchError
from xpevents.events.model import DEFAULT_HEADERS
from xpevents.spool.base import Spool, SpoolRecord
from xpevents.spool.memory import OVERFLOW_POLICIES, Claim, MemorySpool

__all__ = ["BatchDispatcher"]

logger = logging.getLogger("xpevents.dispatch")

_EXCERPT: Final = 500
_IDLE_POLL: Final = 1.0
"""Seconds a sender sleeps when nothing is queued (it is woken on enqueue anyway)."""
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

_live: weakref.WeakSet[BatchDispatcher] = weakref.WeakSet()
_abandoned: list[httpx.Client] = []
"""httpx clients inherited from a parent process: never used nor closed in the child
(closing could shut down sockets the parent still uses)."""


def _after_fork_in_child() -> None:
    _abandoned.clear()
    for dispatcher in list(_live):
        dispatcher._reset_after_fork()


def _close_all_at_exit() -> None:
    for dispatcher in list(_live):
        timeout = dispatcher._atexit_timeout
        if timeout is not None:
            try:
                dispatcher.close(timeout=timeout)
            except Exception:  # pragma: no cover - never let atexit fail
                logger.exception("closing %r at exit failed", dispatcher)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all_at_exit)


class _Circuit:
    """Health of one target URL (guarded by the dispatcher's circuit lock)."""

    __slots__ = ("episode_started", "failures", "open_until", "opens", "probing")

    def __init__(self) -> None:
        self.failures = 0  # consecutive failed requests
        self.opens = 0  # consecutive times the circuit opened
        self.open_until = 0.0  # no request before this (wall clock)
        self.probing = False  # a half-open probe is in flight
        self.episode_started = 0.0


class _Totals:
    """Counters read at the start and end of flush() to report what it achieved."""

    __slots__ = ("delivered", "dropped", "failed")

    def __init__(self, delivered: int, failed: Counter[str], dropped: Counter[str]) -> None:
        self.delivered = delivered
        self.failed = failed
        self.dropped = dropped


class BatchDispatcher:
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
        max_concurrent_requests: sender threads (requests in flight at most). Default 2.
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
        max_concurrent_requests: int = 2,
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
        owner = type(self).__name__
        self._batch_size = positive_int("batch_size", batch_size, owner=owner)
        self._flush_interval = positive_seconds("flush_interval", flush_interval, owner=owner)
        self._max_batch_bytes = positive_int(
            "max_batch_bytes", max_batch_bytes, owner=owner, minimum=1024
        )
        if self._max_batch_bytes > API_MAX_BYTES:
            raise ConfigError(
                f"{owner}(max_batch_bytes={max_batch_bytes!r}): must be at most "
                f"{API_MAX_BYTES} (the event API's request limit)"
            )
        self._max_queue_events = positive_int("max_queue_events", max_queue_events, owner=owner)
        if overflow not in OVERFLOW_POLICIES:
            raise ConfigError(
                f"{owner}(overflow={overflow!r}): expected one of "
                f"{', '.join(repr(p) for p in OVERFLOW_POLICIES)}"
            )
        self._overflow = overflow
        self._block_timeout = positive_seconds(
            "block_timeout", block_timeout, owner=owner, allow_zero=True
        )
        self._workers = positive_int(
            "max_concurrent_requests", max_concurrent_requests, owner=owner
        )
        if self._workers > 64:
            raise ConfigError(
                f"{owner}(max_concurrent_requests={max_concurrent_requests!r}): must be at "
                "most 64; batches grow with load, so a few senders are enough"
            )
        self._timeout = positive_seconds("timeout", timeout, owner=owner)
        if not isinstance(retry, RetryPolicy):
            raise ConfigError(
                f"{owner}(retry={retry!r}): expected an xpevents.RetryPolicy, "
                f"got {type(retry).__name__}"
            )
        if http_client is not None and not isinstance(http_client, httpx.Client):
            raise ConfigError(
                f"{owner}(http_client={http_client!r}): expected an httpx.Client "
                "(an httpx.AsyncClient belongs to AsyncDispatcher)"
            )
        if not isinstance(gzip, bool):
            raise ConfigError(f"{owner}(gzip={gzip!r}): expected True or False")
        self._lease = positive_seconds("lease", lease, owner=owner)
        self._circuit_threshold = positive_int("circuit_threshold", circuit_threshold, owner=owner)
        self._atexit_timeout = (
            None
            if atexit_timeout is None
            else positive_seconds("atexit_timeout", atexit_timeout, owner=owner)
        )
        self._on_drop = optional_callable("on_drop", on_drop, owner=owner)
        self._on_success = optional_callable("on_success", on_success, owner=owner)
        self._on_failure = optional_callable("on_failure", on_failure, owner=owner)
        self._router = EndpointRouter(endpoint)
        self._retry = retry
        self._gzip = gzip
        self._own_client = http_client is None
        self._client = http_client if http_client is not None else self._new_client()
        self._store, self._mem, self._own_spool = self._open_spool(
            owner,
            spool,
            durability=durability,
            commit_interval=commit_interval,
            on_spool_error=on_spool_error,
            max_spool_events=max_spool_events,
            max_spool_bytes=max_spool_bytes,
            max_event_age=max_event_age,
        )
        self._max_records = max(self._batch_size, self._max_queue_events)
        self._envelopes: dict[tuple[Any, ...], tuple[bytes, Any, Any]] = {}
        self._parsed: dict[bytes, Envelope] = {}
        self._closed = False
        self._init_runtime()
        _live.add(self)

    # -- construction helpers --------------------------------------------------------

    def _open_spool(
        self,
        owner: str,
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

        if durability not in ("always", "interval"):
            raise ConfigError(
                f"{owner}(durability={durability!r}): expected 'always' or 'interval'"
            )
        if on_spool_error not in ("memory", "drop"):
            raise ConfigError(
                f"{owner}(on_spool_error={on_spool_error!r}): expected 'memory' or 'drop'"
            )
        positive_seconds("commit_interval", commit_interval, owner=owner)
        if isinstance(spool, MemorySpool):
            spool.on_evict = self._evicted
            return spool, spool, False
        if spool is None or spool == "memory://":
            memory = MemorySpool(
                self._max_queue_events,
                self._overflow,
                self._block_timeout,
                on_evict=self._evicted,
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
        try:
            from xpevents.spool.front import SpoolFront  # type: ignore[import-not-found,unused-ignore]
        except ImportError:  # pragma: no cover - until the durable front lands
            raise ConfigError(
                f"{owner}(spool={spool!r}): durable spools need xpevents.spool.front, "
                "which is not installed"
            ) from None
        front: Spool = SpoolFront(
            store,
            durability=durability,
            commit_interval=commit_interval,
            on_spool_error=on_spool_error,
            max_buffer_events=self._max_queue_events,
            on_drop=self._spool_dropped,
        )
        return front, None, True

    def _new_client(self) -> httpx.Client:
        return httpx.Client(
            timeout=httpx.Timeout(self._timeout),
            limits=httpx.Limits(
                max_connections=self._workers + 2, max_keepalive_connections=self._workers + 2
            ),
        )

    def _init_runtime(self) -> None:
        """State that does not survive a fork: threads, locks, counters."""
        self._pid: int | None = None
        self._threads: list[threading.Thread] = []
        self._lifecycle = threading.Lock()
        self._wake = threading.Event()
        self._wake_at = 1
        self._unsignalled = 0
        self._settled = threading.Condition(threading.Lock())
        self._flush_waiters = 0
        self._flushing = 0
        self._stopping = False
        self._stats = StatsRecorder()
        self._circuit_lock = threading.Lock()
        self._circuits: dict[str, _Circuit] = {}
        self._drop_logged: dict[str, float] = {}

    def _reset_after_fork(self) -> None:
        # The parent's threads do not exist here and its sockets are shared with the
        # parent: start afresh and empty (the parent sends what it queued).
        self._init_runtime()
        if self._mem is not None:
            self._mem.reset_after_fork()
        if self._own_client and not self._closed:
            _abandoned.append(self._client)
            self._client = self._new_client()

    # -- public API ---------------------------------------------------------------------

    @property
    def endpoint(self) -> str | None:
        """The ``endpoint`` option (``None``: each event's own URL)."""
        return self._router.endpoint

    @property
    def spool(self) -> Spool:
        """The spool the senders read from."""
        return self._store

    def dispatch_event(self, event: Any) -> None:
        """Queue ``event``'s visitors for sending; return at once. Never raises.

        The event is not modified. Its visitors are encoded now, so later changes to
        the event do not affect what is sent.
        """
        try:
            if self._pid != os.getpid():
                self._start()
            if self._closed:
                self._refuse(event, _count(event), "closed")
                return
            try:
                params = event.params
                url = event.url
                verb = event.http_verb
            except AttributeError:
                self._refuse(event, 1, "invalid_event")
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
                    self._refuse(event, len(visitors), "serialize", exc)
                    return
            else:
                envelope, encoded = self._raw(event, url, verb, params)
                if envelope is None:
                    return
            mem = self._mem
            if mem is not None:
                size = mem.offer(envelope, encoded, time.time())
                if size:
                    if size == 1 or size == self._wake_at or len(encoded) > 1:
                        self._wake.set()
                else:
                    self._refuse(
                        event,
                        len(encoded),
                        "block_timeout" if self._overflow == "block" else "queue_full",
                    )
            else:
                self._append_to_store(event, envelope, encoded)
        except Exception as exc:  # never let a dispatcher bug reach the caller
            try:
                self._refuse(event, 1, "internal_error", exc)
            except Exception:  # pragma: no cover
                pass

    def stats(self) -> DispatchStats:
        """A snapshot of the counters (see :class:`~xpevents.DispatchStats`)."""
        now = time.time()
        spool_stats = self._store.stats(now=now)
        mem = self._mem
        if mem is not None:
            entries, visitors, depth = mem.counts()
        else:
            entries = visitors = 0
            depth = spool_stats.depth
        with self._circuit_lock:
            circuits_open = sum(
                1
                for c in self._circuits.values()
                if c.failures >= self._circuit_threshold or c.open_until > now
            )
        base = self._stats.snapshot(queue_depth=depth)
        oldest = spool_stats.oldest_enqueued_at
        return replace(
            base,
            calls=base.calls + entries,
            visitors=base.visitors + visitors,
            enqueued=base.enqueued + visitors,
            circuits_open=circuits_open,
            spool_url=self._store.url,
            durable=self._store.durable,
            durability_suspended=bool(getattr(self._store, "fallback_active", False)),
            spool_depth=spool_stats.depth,
            spool_oldest_age=None if oldest is None else max(0.0, now - oldest),
            dead_letters=spool_stats.dead_letters,
        )

    def flush(self, timeout: float = 10.0) -> DispatchOutcome:
        """Send everything enqueued before this call; wait at most ``timeout`` seconds.

        Returns what happened meanwhile; ``pending`` counts visitors enqueued before the
        call and still unsettled (retrying, in flight or waiting) at the deadline.
        Visitors waiting for a retry are not sent earlier than their schedule.
        """
        seconds = _finite_timeout("flush", timeout)
        return self._flush_until(time.monotonic() + seconds)

    def close(self, timeout: float = 10.0) -> DispatchOutcome:
        """Flush, then stop the senders; everything within ``timeout`` seconds. Idempotent.

        Later ``dispatch_event`` calls drop their event (reason ``"closed"``). With the
        memory spool, visitors still unsent at the deadline are lost: they are reported
        in ``pending`` and counted as dropped (``"unsent_at_close"``).
        """
        seconds = _finite_timeout("close", timeout)
        deadline = time.monotonic() + seconds
        with self._lifecycle:
            if self._closed:
                return DispatchOutcome()
            self._closed = True
        _live.discard(self)
        outcome = self._flush_until(deadline)
        self._stopping = True
        self._wake.set()
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stopped = not any(thread.is_alive() for thread in self._threads)
        pending = outcome.pending
        if self._mem is not None and self._own_spool:
            leftover = self._mem.clear()
            if leftover:
                pending = max(pending, len(leftover))
                logger.warning(
                    "BatchDispatcher closed with %d visitor(s) unsent: they are lost",
                    len(leftover),
                )
                self._count_dropped(len(leftover), "unsent_at_close")
                for visitor in leftover:
                    self._callback(self._on_drop, visitor, "unsent_at_close")
        if self._own_spool:
            try:
                flush_buffer = getattr(self._store, "flush_buffer", None)
                if flush_buffer is not None:
                    flush_buffer(max(0.0, deadline - time.monotonic()))
                self._store.close()
            except Exception:
                logger.exception("closing the spool failed")
        if self._own_client and stopped:
            self._client.close()
        return replace(outcome, pending=pending)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(endpoint={self.endpoint!r}, batch_size={self._batch_size}, "
            f"spool={self._store.url!r})"
        )

    # -- enqueue helpers ------------------------------------------------------------------

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
            self._refuse(event, visitors, "invalid_url", exc)
            return None
        assert isinstance(url, str)
        try:
            envelope = batch_envelope(self._router.route(url), params)
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            self._refuse(event, visitors, "serialize", exc)
            return None
        if key is not None:
            if len(self._envelopes) >= 256:
                self._envelopes.clear()
            self._envelopes[key] = (envelope, key[1][5], key[1][6])
        return envelope

    def _raw(
        self, event: Any, url: object, verb: object, params: Any
    ) -> tuple[bytes | None, list[bytes]]:
        """A payload that is not in the event API format: one unit, sent as-is."""
        try:
            validate_url(url, argument="event.url")
        except ConfigError as exc:
            self._refuse(event, 1, "invalid_url", exc)
            return None, []
        assert isinstance(url, str)
        method = verb.upper() if isinstance(verb, str) else verb
        if method not in ("POST", "GET") or (method == "GET" and not isinstance(params, dict)):
            self._refuse(event, 1, "invalid_event", ValueError(f"http_verb={verb!r}"))
            return None, []
        try:
            headers = getattr(event, "headers", None)
            header_map = {str(k): str(v) for k, v in (headers or DEFAULT_HEADERS).items()}
            body = encode(params)
        except (AttributeError, TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            self._refuse(event, 1, "serialize", exc)
            return None, []
        return raw_envelope(method, self._router.route(url), header_map), [body]

    def _append_to_store(self, event: Any, envelope: bytes, encoded: list[bytes]) -> None:
        """The path for a spool that is not the memory spool (durable or custom)."""
        n = len(encoded)
        try:
            self._store.append([(envelope, visitor) for visitor in encoded], now=time.time())
        except Exception as exc:
            self._refuse(event, n, "spool_error", exc)
            return
        stats = self._stats
        with stats.lock:
            stats.calls += 1
            stats.visitors += n
            stats.enqueued += n
            self._unsignalled += n
            wake = self._unsignalled == n or self._unsignalled >= self._batch_size
            if wake:
                self._unsignalled = 0
        if wake:
            self._wake.set()

    def _refuse(self, event: Any, visitors: int, reason: str, exc: Exception | None = None) -> None:
        stats = self._stats
        with stats.lock:
            stats.calls += 1
            stats.visitors += visitors
            stats.dropped[reason] += visitors
            if exc is not None:
                stats.last_error = f"event dropped ({reason}): {exc}"
        self._log_drop(reason, exc)
        self._callback(self._on_drop, event, reason)

    def _evicted(self, visitor: bytes, reason: str) -> None:
        self._count_dropped(1, reason)
        self._log_drop(reason, None)
        self._callback(self._on_drop, visitor, reason)

    def _log_drop(self, reason: str, exc: Exception | None) -> None:
        """One warning per reason and episode (at most one per 10 s), not per event."""
        now = time.monotonic()
        if now - self._drop_logged.get(reason, -_DROP_LOG_EVERY) < _DROP_LOG_EVERY:
            return
        self._drop_logged[reason] = now
        detail = f": {exc}" if exc is not None else ""
        logger.warning(
            "event dropped (%s)%s; drops are counted in stats().dropped (logged at most "
            "every %d s per reason)",
            reason,
            detail,
            _DROP_LOG_EVERY,
        )

    def _spool_dropped(self, reason: str, count: int) -> None:
        self._count_dropped(count, reason)

    def _count_dropped(self, count: int, reason: str) -> None:
        with self._stats.lock:
            self._stats.dropped[reason] += count

    # -- lifecycle ------------------------------------------------------------------------

    def _start(self) -> None:
        with self._lifecycle:
            pid = os.getpid()
            if self._pid == pid:
                return
            if self._pid is not None:  # forked without our at-fork hook running
                self._reset_after_fork()  # the with-block still releases the old lock
            if self._closed:
                self._pid = pid
                return
            self._threads = [
                threading.Thread(target=self._run, name=f"xpevents-batch-{index}", daemon=True)
                for index in range(self._workers)
            ]
            for thread in self._threads:
                thread.start()
            self._pid = pid

    def _flush_until(self, deadline: float) -> DispatchOutcome:
        before = self._totals()
        called_at = time.time()
        pending = self._pending_since(called_at)
        if pending and self._pid != os.getpid() and not self._closed:
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
                    self._flush_waiters += 1
                    try:
                        self._settled.wait(min(remaining, 0.05))
                    finally:
                        self._flush_waiters -= 1
                pending = self._pending_since(called_at)
        finally:
            with self._settled:
                self._flushing -= 1
        after = self._totals()
        return DispatchOutcome(
            delivered=after.delivered - before.delivered,
            failed=MappingProxyType(dict(after.failed - before.failed)),
            dropped=MappingProxyType(dict(after.dropped - before.dropped)),
            pending=pending,
        )

    def _pending_since(self, when: float) -> int:
        mem = self._mem
        if mem is not None:
            return 0 if mem.depth == 0 else mem.pending_since(when)
        store_stats = self._store.stats(now=time.time())
        buffered = int(getattr(self._store, "buffered", 0) or 0)
        oldest = store_stats.oldest_enqueued_at
        if oldest is None or oldest > when:
            return buffered
        return store_stats.depth + buffered

    def _totals(self) -> _Totals:
        stats = self._stats
        with stats.lock:
            return _Totals(stats.delivered, Counter(stats.failed), Counter(stats.dropped))

    # -- the sender loop ------------------------------------------------------------------

    def _run(self) -> None:
        wake = self._wake
        while not self._stopping:
            wake.clear()
            try:
                pause = self._step()
            except Exception:  # a bug must not kill the sender; leases expire and retry
                logger.exception("BatchDispatcher sender error; continuing")
                pause = 0.1
            if pause > 0 and not self._stopping:
                wake.wait(pause)

    def _step(self) -> float:
        """Send one batch if one is due; else return how long to sleep."""
        now = time.time()
        mem = self._mem
        if mem is not None:
            count, oldest, next_retry = mem.waiting(now=now)
        else:
            count, oldest, next_retry = self._store_waiting(now)
        if not count:
            self._wake_at = 1
            return _IDLE_POLL if next_retry is None else min(_IDLE_POLL, next_retry - now)
        due_at = (oldest if oldest is not None else now) + self._flush_interval
        if count < self._batch_size and not self._flushing and due_at > now and not self._stopping:
            self._wake_at = max(1, self._batch_size - count)
            return due_at - now
        claim = self._claim(now)
        if claim is None:
            return 0.0
        self._deliver(claim, now)
        return 0.0

    def _store_waiting(self, now: float) -> tuple[int, float | None, float | None]:
        store = self._store
        due = store.next_due_at(now=now)
        if due is None:
            return 0, None, None
        if due > now:
            return 0, None, due
        stats = store.stats(now=now)
        return max(1, stats.depth - stats.leased), stats.oldest_enqueued_at, None

    def _claim(self, now: float) -> Claim | None:
        mem = self._mem
        if mem is not None:
            return mem.claim_batch(
                max_records=self._max_records,
                max_bytes=self._max_batch_bytes,
                lease=self._lease,
                now=now,
            )
        records: list[SpoolRecord] = self._store.claim(
            max_records=self._max_records,
            max_bytes=self._max_batch_bytes,
            lease=self._lease,
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
            if len(self._parsed) >= 256:
                self._parsed.clear()
            self._parsed[envelope] = parsed
        return parsed

    def _deliver(self, claim: Claim, now: float) -> None:
        envelope = self._envelope(claim.envelope)
        if envelope is None:
            self._dead_letter(
                claim.ids,
                claim.visitors,
                DispatchError("unreadable envelope in the spool", reason="invalid_envelope"),
            )
            return
        wait_until = self._circuit_gate(envelope.url, now)
        if wait_until is not None:
            # The target is failing: put the batch back, untouched, until the circuit
            # lets a probe through. This is not an attempt.
            self._store.retry(
                claim.ids,
                attempts=claim.attempts,
                first_attempt_at=claim.first_attempt_at or now,
                next_attempt_at=wait_until,
            )
            return
        if not envelope.batchable:
            for index, record_id in enumerate(claim.ids):
                self._post(envelope, [record_id], [claim.visitors[index]], claim)
            return
        ids, visitors = claim.ids, claim.visitors
        budget = self._max_batch_bytes - envelope.overhead()
        size = 0
        cut = len(visitors)
        for index, visitor in enumerate(visitors):
            size += len(visitor) + (1 if index else 0)
            if size > budget and index:
                cut = index
                break
        if cut < len(visitors):
            self._store.retry(
                ids[cut:],
                attempts=claim.attempts,
                first_attempt_at=claim.first_attempt_at or now,
                next_attempt_at=now,
            )
            ids, visitors = ids[:cut], visitors[:cut]
        self._post(envelope, ids, visitors, claim)

    def _post(
        self, envelope: Envelope, ids: list[int | str], visitors: list[bytes], claim: Claim
    ) -> None:
        body = envelope.body(visitors)
        url = envelope.url
        if len(body) > API_MAX_BYTES:
            if len(visitors) > 1:
                half = len(visitors) // 2
                self._post(envelope, ids[:half], visitors[:half], claim)
                self._post(envelope, ids[half:], visitors[half:], claim)
                return
            self._dead_letter(
                ids,
                visitors,
                DispatchError(
                    f"a visitor of {len(body)} bytes exceeds the event API's "
                    f"{API_MAX_BYTES}-byte request limit",
                    reason="too_large",
                    url=url,
                ),
            )
            return
        if self._gzip:
            content = _gzip.compress(body, compresslevel=1, mtime=0)
            headers = (
                _GZIP_HEADERS
                if envelope.batchable
                else {
                    **envelope.headers,
                    "Content-Encoding": "gzip",
                }
            )
        else:
            content = body
            headers = _JSON_HEADERS if envelope.batchable else envelope.headers
        n = len(visitors)
        stats = self._stats
        retry_request = claim.attempts > 0
        started = time.time()
        with stats.lock:
            stats.attempts += 1
            stats.retried += retry_request
            stats.bytes_sent += len(content)
            stats.in_flight += 1
        status: int | None = None
        retry_after: float | None = None
        excerpt = ""
        try:
            if envelope.method == "GET":
                response = self._client.get(
                    url, params=msgspec.json.decode(body), headers=headers, timeout=self._timeout
                )
            else:
                response = self._client.post(
                    url, content=content, headers=headers, timeout=self._timeout
                )
        except httpx.TimeoutException as exc:
            outcome, reason, detail = Outcome.TRANSIENT, "timeout", f"timed out ({exc!r})"
        except httpx.TransportError as exc:
            outcome, reason, detail = Outcome.TRANSIENT, "network", f"network error ({exc!r})"
        except Exception as exc:  # a user-supplied client or transport misbehaving
            outcome, reason, detail = Outcome.TRANSIENT, "error", f"unexpected error ({exc!r})"
        else:
            status = response.status_code
            outcome = classify_status(status)
            reason = f"http_{status}"
            detail = f"HTTP {status}"
            if outcome is not Outcome.DELIVERED:
                excerpt = response.text[:_EXCERPT]
                if outcome is Outcome.TRANSIENT:
                    retry_after = _parse_retry_after(response.headers.get("retry-after"))
        finally:
            with stats.lock:
                stats.in_flight -= 1
        now = time.time()
        if outcome is Outcome.DELIVERED:
            self._store.ack(ids)
            with stats.lock:
                stats.delivered += n
                stats.batches_sent += 1
                stats.last_success_at = now
            self._circuit_result(url, now, ok=True)
            self._callback(self._on_success, visitors)
            self._notify_settled()
            return
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
                self._post(envelope, ids[:half], visitors[:half], claim)
                self._post(envelope, ids[half:], visitors[half:], claim)
                return
            self._dead_letter(
                ids,
                visitors,
                DispatchError(
                    f"a single visitor of {len(body)} bytes was refused with HTTP 413",
                    reason="http_413",
                    **error_args,
                ),
            )
            return
        if outcome is Outcome.PERMANENT:
            self._circuit_result(url, now, ok=True)
            self._dead_letter(
                ids,
                visitors,
                DispatchError(
                    f"{n} visitor(s) to {url} refused: {detail}; not retried",
                    reason=reason,
                    **error_args,
                ),
            )
            return
        first = claim.first_attempt_at if claim.first_attempt_at is not None else started
        delay = self._retry.next_delay(
            attempts=attempts, first_attempt_at=first, now=now, retry_after=retry_after
        )
        self._circuit_result(url, now, ok=False, retry_after=retry_after, detail=detail)
        with stats.lock:
            stats.last_error = f"request to {url} failed: {detail}"
        if isinstance(delay, str):
            why = {
                "attempts_exhausted": "no attempts left",
                "retry_age_exceeded": "retrying longer than max_retry_age",
                "retry_after_too_long": f"Retry-After {retry_after} s is over max_retry_after",
            }.get(delay, delay)
            self._dead_letter(
                ids,
                visitors,
                DispatchError(
                    f"{n} visitor(s) to {url} given up after {attempts} attempt(s): "
                    f"{detail}; {why}",
                    reason=delay,
                    **error_args,
                ),
            )
            return
        self._store.retry(
            ids, attempts=attempts, first_attempt_at=first, next_attempt_at=now + delay
        )
        self._notify_settled()

    def _dead_letter(
        self, ids: list[int | str], visitors: list[bytes], error: DispatchError
    ) -> None:
        self._store.dead_letter(ids, reason=error.reason, now=time.time())
        with self._stats.lock:
            self._stats.failed[error.reason] += len(ids)
            self._stats.last_error = str(error)
        logger.warning("%s (dead-lettered)", error)
        self._callback(self._on_failure, visitors, error)
        self._notify_settled()

    def _notify_settled(self) -> None:
        if self._flush_waiters:
            with self._settled:
                self._settled.notify_all()

    # -- circuit breaker --------------------------------------------------------------------

    def _circuit_gate(self, url: str, now: float) -> float | None:
        """``None`` if a request to ``url`` may go now, else when to try again."""
        with self._circuit_lock:
            circuit = self._circuits.get(url)
            if circuit is None:
                return None
            if circuit.open_until > now:
                return circuit.open_until
            if circuit.failures >= self._circuit_threshold:
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
            if circuit.failures >= self._circuit_threshold:
                circuit.opens += 1
                retry = self._retry
                ceiling = min(
                    retry.backoff_max, retry.backoff_base * 2.0 ** min(circuit.opens - 1, 62)
                )
                circuit.open_until = max(
                    circuit.open_until, now + random.uniform(ceiling / 2, ceiling)
                )
            if retry_after:
                wait = min(retry_after, self._retry.max_retry_after)
                circuit.open_until = max(circuit.open_until, now + wait)

    # -- callbacks ------------------------------------------------------------------------------

    def _callback(self, callback: Callable[..., object] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            with self._stats.lock:
                self._stats.callback_errors += 1
            logger.exception("dispatcher callback %r raised; delivery goes on", callback)


def _count(event: Any) -> int:
    try:
        visitors = event.params.get("visitors")
    except AttributeError:
        return 1
    return len(visitors) if isinstance(visitors, list) and visitors else 1


def _finite_timeout(owner: str, timeout: object) -> float:
    if timeout is None:
        raise ConfigError(
            f"{owner}(timeout=None): a finite number of seconds is required, so the call "
            "cannot hang; use e.g. timeout=10.0"
        )
    return positive_seconds("timeout", timeout, owner=owner, allow_zero=True)
