"""One contract, every batching dispatcher: BatchDispatcher (threads) and AsyncDispatcher
(asyncio) promise the same behaviour, so the same tests run against both.

Each test talks to real servers on 127.0.0.1 (the collector, or a scripted server). The
asyncio dispatcher runs on an event loop in a thread of its own, and the test calls it
from outside that loop, as the official SDK's event processor does.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import httpx
import pytest

from xpevents import AsyncDispatcher, BatchDispatcher, DispatchError, LogEvent
from xpevents.stats import DispatchOutcome, DispatchStats
from xpevents.testing import CollectorHandle

from payloads import FAST_RETRY, event
from servers import Reply, scripted_server


class Driver:
    """The same calls on either dispatcher; flush/close wait for the asyncio one."""

    def __init__(self, kind: str, **options: Any) -> None:
        self.kind = kind
        self.loop: asyncio.AbstractEventLoop | None = None
        if kind == "batch":
            self.dispatcher: Any = BatchDispatcher(atexit_timeout=None, **options)
            return
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.dispatcher = self._on_loop(self._make_async(options))

    async def _make_async(self, options: dict[str, Any]) -> AsyncDispatcher:
        if "http_client" in options and callable(options["http_client"]):
            options["http_client"] = options["http_client"]()
        dispatcher = AsyncDispatcher(**options)
        await dispatcher.start()
        return dispatcher

    def _on_loop(self, coroutine: Any) -> Any:
        assert self.loop is not None
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout=60)

    def dispatch(self, ev: Any) -> None:
        self.dispatcher.dispatch_event(ev)

    def flush(self, timeout: float = 10.0) -> DispatchOutcome:
        if self.loop is None:
            return self.dispatcher.flush(timeout)  # type: ignore[no-any-return]
        return self._on_loop(self.dispatcher.flush(timeout))  # type: ignore[no-any-return]

    def close(self, timeout: float = 10.0) -> DispatchOutcome:
        if self.loop is None:
            return self.dispatcher.close(timeout)  # type: ignore[no-any-return]
        return self._on_loop(self.dispatcher.aclose(timeout))  # type: ignore[no-any-return]

    def stats(self) -> DispatchStats:
        return self.dispatcher.stats()  # type: ignore[no-any-return]

    def shutdown(self) -> None:
        self.close(5.0)
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()


@pytest.fixture(params=["batch", "asyncio"])
def make(request: pytest.FixtureRequest) -> Iterator[Callable[..., Driver]]:
    """``make(**options)`` opens the dispatcher under test; closed after the test."""
    drivers: list[Driver] = []

    def factory(**options: Any) -> Driver:
        options.setdefault("retry", FAST_RETRY)
        options.setdefault("flush_interval", 0.05)
        driver = Driver(request.param, **options)
        drivers.append(driver)
        return driver

    yield factory
    for driver in drivers:
        driver.shutdown()


def http_client(kind: str, transport: httpx.BaseTransport | httpx.AsyncBaseTransport) -> Any:
    if kind == "batch":
        assert isinstance(transport, httpx.BaseTransport)
        return httpx.Client(transport=transport)
    assert isinstance(transport, httpx.AsyncBaseTransport)
    return lambda: httpx.AsyncClient(transport=transport)  # made on the loop


# -- delivery -------------------------------------------------------------------------


def test_everything_is_delivered_in_few_requests(
    make: Callable[..., Driver], collector: CollectorHandle
) -> None:
    successes: list[int] = []
    d = make(endpoint=collector.base_url, on_success=lambda v: successes.append(len(v)))
    for _ in range(300):
        d.dispatch(event())
    d.dispatch(event(n=4))
    outcome = d.flush(10)
    stats = d.stats()
    assert outcome.complete  # delivered counts only what settled after flush() began
    assert stats.calls == 301
    assert stats.visitors == stats.enqueued == stats.delivered == 304
    assert sum(successes) == 304 and stats.batches_sent == len(successes) <= 10
    assert stats.queue_depth == 0 and stats.in_flight == 0
    assert collector.stats()["unique_events"] == 304


def test_visitors_arrive_byte_identical_and_events_are_not_modified(
    make: Callable[..., Driver],
) -> None:
    with scripted_server() as server:
        d = make(endpoint=server.base_url)
        sent = [event(n=2) for _ in range(5)]
        before = [json.dumps(ev.params, sort_keys=True) for ev in sent]
        for ev in sent:
            d.dispatch(ev)
        assert d.flush(10).complete
        assert [json.dumps(ev.params, sort_keys=True) for ev in sent] == before
        received = [v for r in server.received for v in json.loads(r.body)["visitors"]]
        assert received == [v for ev in sent for v in ev.params["visitors"]]
        assert {r.path for r in server.received} == {"/v1/events"}


def test_a_base_endpoint_maps_us_and_eu_paths(make: Callable[..., Driver]) -> None:
    with scripted_server() as server:
        d = make(endpoint=server.base_url)
        d.dispatch(event("https://logx.optimizely.com/v1/events"))
        d.dispatch(event("https://eu.logx.optimizely.com/v1/events"))
        assert d.flush(10).complete
        assert sorted(r.path for r in server.received) == ["/eu/v1/events", "/v1/events"]


# -- failures ---------------------------------------------------------------------------


def test_transient_answers_are_retried_until_delivered(make: Callable[..., Driver]) -> None:
    with scripted_server() as server:
        server.script.extend([Reply(503), Reply(429, {"Retry-After": "0.1"})])
        d = make(endpoint=server.base_url)
        d.dispatch(event(n=3))
        outcome = d.flush(10)
        stats = d.stats()
        assert outcome.complete and stats.delivered == 3
        assert stats.attempts == 3 and stats.retried == 2 and stats.failed == {}


def test_a_permanent_answer_dead_letters_and_reports(make: Callable[..., Driver]) -> None:
    failures: list[tuple[int, DispatchError]] = []
    with scripted_server() as server:
        server.default = Reply(401, body=b'{"error":"bad"}')
        d = make(endpoint=server.base_url, on_failure=lambda v, e: failures.append((len(v), e)))
        d.dispatch(event(n=2))
        outcome = d.flush(10)
        assert d.stats().failed == {"http_401": 2} and outcome.complete
        ((count, error),) = failures
        assert count == 2 and error.status == 401 and '"bad"' in error.response_excerpt
        assert d.stats().dead_letters == {"http_401": 2}
        assert len(server.received) == 1  # not retried


def test_a_400_isolates_the_refused_visitors(make: Callable[..., Driver]) -> None:
    """400 names the batch's content: it is bisected, each visitor refused on its own."""
    failures: list[tuple[int, DispatchError]] = []
    with scripted_server() as server:
        server.default = Reply(400, body=b'{"error":"bad"}')
        d = make(endpoint=server.base_url, on_failure=lambda v, e: failures.append((len(v), e)))
        d.dispatch(event(n=2))
        outcome = d.flush(10)
        assert d.stats().failed == {"http_400": 2} and outcome.complete
        assert [count for count, _ in failures] == [1, 1] and d.stats().splits == 1
        assert len(server.received) == 3  # the batch, then each half; never retried


def test_413_halves_until_the_endpoint_accepts(make: Callable[..., Driver]) -> None:
    with scripted_server() as server:
        server.script.extend([Reply(413), Reply(413)])
        d = make(endpoint=server.base_url, batch_size=8)
        for _ in range(8):
            d.dispatch(event())
        outcome = d.flush(10)
        assert outcome.complete and d.stats().delivered == 8
        sizes = [len(json.loads(r.body)["visitors"]) for r in server.received]
        assert sizes[0] == 8 and sum(sizes[2:]) == 8 and max(sizes[2:]) <= 4


def test_a_raising_user_transport_is_transient_for_batching_dispatchers(
    make: Callable[..., Driver], collector: CollectorHandle, request: pytest.FixtureRequest
) -> None:
    """A user's transport that raises something unexpected delays events, never loses them."""
    kind = request.node.callspec.params["make"]
    failures_left = [3]

    class Broken(httpx.HTTPTransport):
        def handle_request(self, req: httpx.Request) -> httpx.Response:
            if failures_left[0] > 0:
                failures_left[0] -= 1
                raise RuntimeError("custom transport bug")
            return super().handle_request(req)

    class AsyncBroken(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, req: httpx.Request) -> httpx.Response:
            if failures_left[0] > 0:
                failures_left[0] -= 1
                raise RuntimeError("custom transport bug")
            return await super().handle_async_request(req)

    transport = Broken() if kind == "batch" else AsyncBroken()
    d = make(endpoint=collector.base_url, http_client=http_client(kind, transport))
    d.dispatch(event(n=2))
    outcome = d.flush(15)
    stats = d.stats()
    assert outcome.complete and stats.delivered == 2
    assert stats.failed == {} and stats.retried == 3
    assert "custom transport bug" in (stats.last_error or "")


# -- what is refused ----------------------------------------------------------------------


def test_bad_events_are_dropped_with_their_reason_and_never_raise(
    make: Callable[..., Driver], collector: CollectorHandle
) -> None:
    dropped: list[str] = []
    d = make(endpoint=collector.base_url, on_drop=lambda e, reason: dropped.append(reason))
    d.dispatch(object())
    d.dispatch(LogEvent("ftp://nowhere", {"visitors": [{"visitor_id": "x"}]}))
    d.dispatch(LogEvent("https://logx.optimizely.com/v1/events", {"visitors": [{"x": object()}]}))
    d.dispatch(event())
    assert d.flush(10).complete
    assert d.stats().delivered == 1
    assert dropped == ["invalid_event", "invalid_url", "serialize"]
    assert d.stats().dropped == {"invalid_event": 1, "invalid_url": 1, "serialize": 1}


def test_a_full_queue_drops_the_newest_and_counts_it(make: Callable[..., Driver]) -> None:
    with scripted_server() as server:
        server.default = Reply(204, delay=0.3)
        d = make(endpoint=server.base_url, max_queue_events=50, batch_size=10)
        for _ in range(500):
            d.dispatch(event())
        stats = d.stats()
        assert stats.visitors == 500
        assert stats.dropped.get("queue_full", 0) >= 400
        assert stats.queue_depth <= 51


def test_after_close_events_are_dropped_as_closed_and_close_is_idempotent(
    make: Callable[..., Driver], collector: CollectorHandle
) -> None:
    d = make(endpoint=collector.base_url)
    d.dispatch(event())
    first = d.close(10)
    assert first.complete and d.stats().delivered == 1
    assert d.close(1) == DispatchOutcome()
    d.dispatch(event(n=2))
    assert d.stats().dropped == {"closed": 2}


def test_counters_account_for_every_visitor(
    make: Callable[..., Driver], collector: CollectorHandle
) -> None:
    collector.control(fail_rate=0.3, seed=3)
    d = make(endpoint=collector.base_url, max_queue_events=100)
    for i in range(400):
        d.dispatch(event(n=1 + i % 3))
    outcome = d.flush(20)
    stats = d.stats()
    settled = stats.delivered + sum(stats.failed.values()) + sum(stats.dropped.values())
    assert stats.visitors == settled + outcome.pending
