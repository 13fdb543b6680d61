"""The synchronous dispatcher: one POST per event, in the caller's thread.

Optimizely's documented out-of-the-box dispatcher, done properly: a pooled keep-alive
client, retries that do fire for POST, ``Retry-After`` honoured, one deadline for the
whole call, and every failure counted and reported. It blocks the caller for as long
as the endpoint takes; production code wants :class:`~xpevents.BatchDispatcher`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from xpevents._internal import forking
from xpevents._internal.closing import Closing
from xpevents._internal.redact import redact_url
from xpevents._internal.validate import optional_callable, positive_seconds
from xpevents.dispatch.deadline import deadline, enforce_deadlines
from xpevents.dispatch.direct import DirectPool
from xpevents.dispatch.environment import endpoint_default, sending_disabled
from xpevents.dispatch.resolve import DEFAULT_DNS_TTL, HostCache
from xpevents.errors import ConfigError, DispatchError, PayloadError
from xpevents.events.model import DEFAULT_HEADERS
from xpevents.send.endpoint import EndpointRouter, validate_url
from xpevents.send.outcome import Outcome, ResponseLike, Verdict, of_error, of_response
from xpevents.send.retry import SYNC_RETRY, GiveUp, RetryPolicy
from xpevents.spool.envelope import encode_json, visitor_count
from xpevents.stats import DispatchOutcome, DispatchStats, StatsRecorder

logger = logging.getLogger("xpevents.dispatch")


class DefaultEventDispatcher(Closing):
    """POST each event now, in the caller's thread, with retries and one deadline.

    Args:
        endpoint: send every event here instead of ``event.url``. A full URL with a
            path receives everything; a base URL without a path
            (``http://127.0.0.1:8787``) maps the Event API's US endpoint to
            ``/v1/events`` and its EU endpoint to ``/eu/v1/events``. Default ``None``.
        timeout: seconds; bounds the whole ``dispatch_event`` call: DNS, connect,
            retries and waits included. Default 10.
        dns_cache_ttl: seconds a host name's addresses are reused for new connections
            (our own client only). A lookup runs in a helper thread, waited for only
            until the deadline; a cached host, or a keep-alive connection, is sent on
            straight from the caller's thread. 0 looks the name up for every new
            connection. Default 60.
        retry: a :class:`RetryPolicy`; default 3 attempts, 0.2 s backoff base with full
            jitter, 1 s cap, ``Retry-After`` honoured up to 60 s. A ``Retry-After``
            longer than the time left ends the call as failed.
        http_client: an ``httpx.Client`` of yours (proxies, custom CA, mTLS); it is not
            closed by :meth:`close`. Default: a pooled keep-alive client of our own
            with httpx's defaults (the usual proxy environment variables apply). A
            client of yours is driven from a helper thread so that the caller's wait
            stays bounded by ``timeout`` whatever its transport does.
        on_success: ``on_success(event)``, called after a 2xx.
        on_failure: ``on_failure(event, error: DispatchError)``, called once per event
            given up on.
        raise_on_failure: raise :class:`DispatchError` from ``dispatch_event`` when the
            event could not be delivered. Default ``False``: failures are logged
            (logger ``xpevents.dispatch``, one line per event) and counted.

    Raises:
        ConfigError: an argument is invalid; the message names it.
    """

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        timeout: float = 10.0,
        dns_cache_ttl: float = DEFAULT_DNS_TTL,
        retry: RetryPolicy = SYNC_RETRY,
        http_client: httpx.Client | None = None,
        on_success: Callable[[Any], object] | None = None,
        on_failure: Callable[[Any, DispatchError], object] | None = None,
        raise_on_failure: bool = False,
    ) -> None:
        owner = type(self).__name__
        self._timeout = positive_seconds("timeout", timeout, owner=owner)
        ttl = positive_seconds("dns_cache_ttl", dns_cache_ttl, owner=owner, allow_zero=True)
        self._hosts = HostCache(ttl)
        if not isinstance(retry, RetryPolicy):
            raise ConfigError(
                f"{owner}(retry={retry!r}): expected an xpevents.RetryPolicy, "
                f"got {type(retry).__name__}"
            )
        if http_client is not None and not isinstance(http_client, httpx.Client):
            raise ConfigError(
                f"{owner}(http_client={http_client!r}): expected an httpx.Client "
                "(use AsyncDispatcher for an httpx.AsyncClient)"
            )
        self._router = EndpointRouter(endpoint_default(endpoint, type(self).__name__))
        self._disabled = sending_disabled(type(self).__name__)
        self._retry = retry
        self._on_success = optional_callable("on_success", on_success, owner=owner)
        self._on_failure = optional_callable("on_failure", on_failure, owner=owner)
        self._raise = bool(raise_on_failure)
        self._own_client = http_client is None
        self._inline = False  # set by _new_client: requests go from the caller's thread
        self._direct: DirectPool | None = None  # set by _new_client
        self._client = http_client if http_client is not None else self._new_client()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._stats = StatsRecorder()
        self._closed = False
        forking.track(self, forking.Stage.DISPATCHER)

    # -- public API ----------------------------------------------------------------

    @property
    def endpoint(self) -> str | None:
        """The ``endpoint`` option (``None``: each event's own URL)."""
        return self._router.endpoint

    def dispatch_event(self, event: Any) -> None:
        """Send ``event`` now; return when it was delivered or given up on.

        Never raises unless ``raise_on_failure=True``. The event is not modified.
        """
        started = time.monotonic()
        deadline = started + self._timeout
        visitors = visitor_count(getattr(event, "params", None))
        if self._closed:
            self._stats.record_refused(visitors, "closed")
            logger.warning("event dropped: the dispatcher is closed")
            return
        if self._disabled:
            self._stats.record_refused(visitors, "disabled")
            return
        self._stats.record_call(visitors)
        try:
            request = self._prepare(event)
        except DispatchError as error:
            self._give_up(event, error, visitors)
            return
        self._send(event, request, visitors, started, deadline)

    def stats(self) -> DispatchStats:
        """A snapshot of the counters (see :class:`DispatchStats`)."""
        return self._stats.snapshot()

    def flush(self, timeout: float = 10.0) -> DispatchOutcome:
        """Nothing is ever queued here: returns at once."""
        positive_seconds("timeout", timeout, owner="flush", allow_zero=True)
        return DispatchOutcome(delivered_total=self._stats.delivered)

    def close(self, timeout: float = 10.0) -> DispatchOutcome:
        """Release the connection pool (not a client you passed in). Idempotent.

        Later ``dispatch_event`` calls drop their event and count it as ``closed``.
        """
        positive_seconds("timeout", timeout, owner="close", allow_zero=True)
        if self._closed:
            return DispatchOutcome()
        self._closed = True
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        if self._own_client:
            self._client.close()
        if self._direct is not None:
            self._direct.close()
        forking.untrack(self)
        return DispatchOutcome(delivered_total=self._stats.delivered)

    def __repr__(self) -> str:
        endpoint = None if self.endpoint is None else redact_url(self.endpoint)
        return f"{type(self).__name__}(endpoint={endpoint!r}, timeout={self._timeout})"

    # -- internals -------------------------------------------------------------------

    def _new_client(self) -> httpx.Client:
        client = httpx.Client(
            timeout=self._timeout,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
        )
        # Every connect, read and write is clamped to the deadline and DNS goes through
        # the cache: the caller's own thread can then send, with no hand-off.
        self._inline = enforce_deadlines(client, resolver=self._hosts)
        # The POSTs httpx would send direct (no proxy) go on http.client: a fraction
        # of httpx's cost per call, with the same deadline, TLS context and headers.
        self._direct = DirectPool.for_client(client, self._hosts) if self._inline else None
        return client

    def _reset_after_fork(self) -> None:
        # The parent's pool threads do not exist here and its sockets are shared with
        # the parent: start afresh, leaving the parent's objects untouched.
        self._executor_lock = threading.Lock()
        self._executor = None
        self._stats.lock = threading.Lock()
        self._hosts.reset_after_fork()
        if self._direct is not None:
            self._direct.reset_after_fork()
        if self._own_client and not self._closed:
            self._client = self._new_client()

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        executor = self._executor
        if executor is None:
            with self._executor_lock:
                executor = self._executor
                if executor is None:
                    executor = concurrent.futures.ThreadPoolExecutor(
                        max_workers=8, thread_name_prefix="xpevents-sync"
                    )
                    self._executor = executor
        return executor

    def _prepare(self, event: Any) -> _Request:
        try:
            url = event.url
            verb = event.http_verb
            params = event.params
            headers = event.headers
        except AttributeError as exc:
            raise DispatchError(
                f"not an event: {exc}; an event needs url, params, http_verb and headers",
                reason="invalid_event",
            ) from None
        try:
            validate_url(url, argument="event.url")
        except ConfigError as exc:
            raise DispatchError(str(exc), reason="invalid_url", url=redact_url(url)) from None
        target = self._router.route(url)
        verb = str(verb).upper() if isinstance(verb, str) else verb
        header_map = dict(DEFAULT_HEADERS if headers is None else headers)
        if verb == "POST":
            try:
                body = encode_json(params)
            except PayloadError as exc:
                raise DispatchError(str(exc), reason="serialize", url=target) from None
            return _Request("POST", target, header_map, body, None)
        if verb == "GET":
            if not isinstance(params, dict):
                raise DispatchError(
                    f"GET event params must be a dict of query parameters, "
                    f"got {type(params).__name__}",
                    reason="serialize",
                    url=target,
                )
            return _Request("GET", target, header_map, b"", params)
        raise DispatchError(
            f"event.http_verb={verb!r}: expected 'POST' or 'GET'", reason="invalid_verb", url=target
        )

    def _send(
        self, event: Any, request: _Request, visitors: int, started: float, deadline: float
    ) -> None:
        attempts = 0
        while True:
            attempts += 1
            verdict = self._try(request, deadline, retry=attempts > 1)
            if verdict.outcome is Outcome.DELIVERED:
                self._stats.record_delivered(visitors, now=time.time())
                self._stats.run_callback(self._on_success, event)
                return
            detail = verdict.detail
            if verdict.outcome is Outcome.TRANSIENT:
                wait, detail = self._next_wait(verdict, attempts, started, deadline)
                if wait is not None:
                    time.sleep(wait)
                    continue
            error = DispatchError(
                f"event to {redact_url(request.url)} failed after {attempts} attempt"
                f"{'s' if attempts > 1 else ''}: {detail}",
                reason=verdict.reason,
                url=redact_url(request.url),
                status=verdict.status,
                response_excerpt=verdict.excerpt,
                attempts=attempts,
            )
            self._give_up(event, error, visitors)
            return

    def _try(self, request: _Request, deadline: float, *, retry: bool) -> Verdict:
        """One attempt within what is left of the deadline, and what its answer means."""
        self._stats.record_attempt(len(request.body), retry=retry)
        try:
            response = self._attempt(request, deadline - time.monotonic())
        except concurrent.futures.TimeoutError:  # no time left at all
            detail = f"no answer within the {self._timeout:g} s timeout"
            return Verdict(Outcome.PERMANENT, "timeout", detail)
        except Exception as exc:
            # The caller waits: a client raising something unexpected is not retried.
            return of_error(exc, unexpected=Outcome.PERMANENT)
        finally:
            self._stats.record_done()
        return of_response(response, now=time.time())

    def _next_wait(
        self, verdict: Verdict, attempts: int, started: float, deadline: float
    ) -> tuple[float | None, str]:
        """Seconds to sleep before the next attempt (``None``: give up), and the detail."""
        now = time.monotonic()
        retry_after = verdict.retry_after
        delay = self._retry.next_delay(
            attempts=attempts, first_attempt_at=started, now=now, retry_after=retry_after
        )
        if isinstance(delay, float) and now + delay < deadline:
            return delay, verdict.detail
        if delay is GiveUp.RETRY_AFTER_TOO_LONG or (
            retry_after is not None and now + retry_after >= deadline
        ):
            return (
                None,
                f"{verdict.detail}; Retry-After {retry_after:g} s is longer than the time left",
            )
        if isinstance(delay, float):
            return None, f"{verdict.detail}; no time left for another attempt before the timeout"
        return None, verdict.detail

    def _attempt(self, request: _Request, remaining: float) -> ResponseLike:
        if remaining <= 0:
            raise concurrent.futures.TimeoutError
        if self._inline:
            return self._request(request, remaining)
        future = self._pool().submit(self._request, request, remaining)
        try:
            return future.result(timeout=remaining)
        except concurrent.futures.TimeoutError:
            future.add_done_callback(_discard_response)
            raise

    def _request(self, request: _Request, remaining: float) -> ResponseLike:
        direct = self._direct
        if direct is not None and request.method == "POST":
            route = direct.route(request.url)
            if route is not None:
                return direct.post(route, request.headers, request.body, remaining)
        with deadline(remaining):
            return self._client.request(
                request.method,
                request.url,
                content=request.body if request.method == "POST" else None,
                params=request.query,
                headers=request.headers,
                timeout=httpx.Timeout(remaining),
            )

    def _give_up(self, event: Any, error: DispatchError, visitors: int) -> None:
        self._stats.record_failed(error.reason, visitors, str(error))
        logger.warning("%s", error)
        self._stats.run_callback(self._on_failure, event, error)
        if self._raise:
            raise error


class _Request:
    __slots__ = ("body", "headers", "method", "query", "url")

    def __init__(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes,
        query: dict[str, Any] | None,
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.query = query


def _discard_response(future: concurrent.futures.Future[ResponseLike]) -> None:
    if not future.cancelled() and future.exception() is None:
        response = future.result()
        if isinstance(response, httpx.Response):
            response.close()
