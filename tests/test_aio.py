"""AsyncDispatcher against the real collector (and scripted servers) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec
import pytest

from xpevents import (
    AsyncDispatcher,
    BatchDispatcher,
    ConfigError,
    DispatchError,
    LogEvent,
    RetryPolicy,
)
from xpevents.dispatch.core import DispatchCore
from xpevents.testing import CollectorHandle, run_collector

from payloads import FAST_RETRY, event
from servers import Reply, closed_port_url, scripted_server, silent_server

T = TypeVar("T")


def run(coro_fn: Callable[[], Awaitable[T]], timeout: float = 120.0) -> T:
    """Run a test coroutine on a fresh loop, bounded."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro_fn()

    return asyncio.run(bounded())


# -- delivery, batching, merging -----------------------------------------------------------


def test_delivers_everything_in_few_requests(collector: CollectorHandle) -> None:
    successes: list[int] = []

    async def main() -> Any:
        async with AsyncDispatcher(
            endpoint=collector.base_url, on_success=lambda v: successes.append(len(v))
        ) as d:
            for _ in range(1000):
                d.dispatch_event(event())
            d.dispatch_event(event(n=3))
            outcome = await d.flush(10)
            return outcome, d.stats()

    outcome, stats = run(main)
    assert outcome.pending == 0 and outcome.delivered == 1003
    assert stats.calls == 1001
    assert stats.visitors == stats.enqueued == stats.delivered == 1003
    assert stats.batches_sent == len(successes) <= 20
    assert stats.attempts == stats.batches_sent and stats.retried == 0
    assert stats.queue_depth == stats.spool_depth == 0 and stats.in_flight == 0
    got = collector.stats()
    assert got["unique_events"] == 1003 and got["duplicates"] == 0


def test_batch_size_and_flush_interval_make_a_send_due() -> None:
    """batch_size visitors send at once; fewer wait for flush_interval."""

    async def main() -> tuple[float, float, int]:
        with scripted_server() as server:
            async with AsyncDispatcher(
                endpoint=server.base_url, batch_size=10, flush_interval=0.5
            ) as d:
                started = time.monotonic()
                for _ in range(10):
                    d.dispatch_event(event())
                while not server.received:
                    await asyncio.sleep(0.005)
                full = time.monotonic() - started
                started = time.monotonic()
                d.dispatch_event(event())
                while len(server.received) < 2:
                    await asyncio.sleep(0.005)
                timed = time.monotonic() - started
            return full, timed, len(json.loads(server.received[0].body)["visitors"])

    full, timed, first = run(main)
    assert full < 0.3, full  # due at once, not after the 0.5 s interval
    assert first == 10
    assert 0.4 <= timed < 1.5, timed


def test_merge_rules_and_byte_identical_visitors() -> None:
    eu = "https://eu.logx.optimizely.com/v1/events"
    sent: list[LogEvent] = []
    for i in range(60):
        variant = i % 6
        head: dict[str, Any] = [
            {},
            {"project_id": "other"},
            {"revision": "8"},
            {},
            {"anonymize_ip": True},
            {"extra": {"keep": [1, 2]}},
        ][variant]
        sent.append(event(eu if variant == 3 else "https://logx.optimizely.com/v1/events", **head))

    with scripted_server() as server:

        async def main() -> None:
            async with AsyncDispatcher(endpoint=server.base_url, flush_interval=0.05) as d:
                for ev in sent:
                    d.dispatch_event(ev)
                assert (await d.flush(10)).pending == 0

        run(main)
        assert 6 <= len(server.received) <= 12
        assert {r.path for r in server.received} == {"/v1/events", "/eu/v1/events"}
        seen = 0
        for received in server.received:
            doc = json.loads(received.body)
            head = {k: v for k, v in doc.items() if k != "visitors"}
            for ev in sent:
                if ev.params["visitors"][0] in doc["visitors"]:
                    assert head == {k: v for k, v in ev.params.items() if k != "visitors"}
                    assert (received.path == "/eu/v1/events") == ev.url.startswith("https://eu.")
                    assert msgspec.json.encode(ev.params["visitors"][0]) in received.body
                    seen += 1
        assert seen == 60


def test_bad_input_is_counted_never_raised_and_raw_payloads_go_alone() -> None:
    drops: list[str] = []
    raw = {"hello": "world"}
    with scripted_server() as server:

        async def main() -> Any:
            d = AsyncDispatcher(
                endpoint=server.base_url, flush_interval=0.05, on_drop=lambda e, r: drops.append(r)
            )
            d.dispatch_event(object())
            d.dispatch_event(LogEvent("not a url", event().params))
            bad = event().params | {"visitors": [{"bad": object()}]}
            d.dispatch_event(LogEvent("https://logx.optimizely.com/v1/events", bad))
            d.dispatch_event(LogEvent("https://logx.optimizely.com/v1/events", raw))
            assert (await d.flush(5)).pending == 0
            await d.aclose()
            return d.stats()

        stats = run(main)
        assert stats.dropped == {"invalid_event": 1, "invalid_url": 1, "serialize": 1}
        assert drops == ["invalid_event", "invalid_url", "serialize"]
        assert stats.calls == 4 and stats.delivered == 1
        assert [r.body for r in server.received] == [msgspec.json.encode(raw)]


def test_gzip_bodies_small_and_large() -> None:
    with scripted_server() as server:

        async def main() -> list[LogEvent]:
            events = [event(), *(event(pad=2000) for _ in range(60))]  # >64 KiB: off-loop gzip
            async with AsyncDispatcher(
                endpoint=server.base_url, gzip=True, flush_interval=0.05
            ) as d:
                d.dispatch_event(events[0])
                assert (await d.flush(5)).pending == 0
                for ev in events[1:]:
                    d.dispatch_event(ev)
                assert (await d.flush(5)).pending == 0
            return events

        events = run(main)
        assert all(r.headers["Content-Encoding"] == "gzip" for r in server.received)
        bodies = [json.loads(gzip.decompress(r.body)) for r in server.received]
        assert bodies[0] == events[0].params
        assert sum(len(b["visitors"]) for b in bodies) == 61


# -- retries and failures (the shared core: same rules as BatchDispatcher) -------------------


def test_no_loss_under_faults() -> None:
    total = 3000
    with run_collector(fail_rate=0.3, rate_429=0.1, retry_after=1, drop_rate=0.05, seed=5) as c:

        async def main() -> Any:
            async with AsyncDispatcher(
                endpoint=c.base_url,
                retry=FAST_RETRY,
                max_batch_bytes=32 * 1024,
                flush_interval=0.05,
                max_queue_events=total,
                timeout=5,
            ) as d:
                for i in range(total):
                    d.dispatch_event(event())
                    if i % 100 == 0:
                        await asyncio.sleep(0)
                outcome = await d.flush(90)
                return outcome, d.stats()

        outcome, stats = run(main)
        got = c.stats()
    assert outcome.pending == 0, outcome
    assert got["unique_events"] == total
    assert stats.delivered == total
    assert stats.retried > 0 and stats.attempts > stats.batches_sent
    assert stats.failed == {} and stats.dropped == {}


def test_retry_after_honoured_413_split_and_4xx_dead_lettered() -> None:
    failures: list[DispatchError] = []
    replies = [
        Reply(429, {"Retry-After": "1"}),
        Reply(503),
        Reply(413),
        Reply(204),
        Reply(204),
        Reply(401, body=b'{"error": "bad"}'),
    ]
    with scripted_server(*replies) as server:

        async def main() -> Any:
            async with AsyncDispatcher(
                endpoint=server.base_url,
                retry=FAST_RETRY,
                flush_interval=0.05,
                on_failure=lambda v, e: failures.append(e),
            ) as d:
                started = time.monotonic()
                for _ in range(4):
                    d.dispatch_event(event())
                assert (await d.flush(10)).pending == 0
                elapsed = time.monotonic() - started
                d.dispatch_event(event(n=2))
                outcome = await d.flush(5)
                return elapsed, outcome, d.stats()

        elapsed, outcome, stats = run(main)
    assert elapsed >= 1.0  # Retry-After: 1
    bodies = [r.body for r in server.received]
    assert bodies[0] == bodies[1] == bodies[2]  # retries resend the same bytes
    assert len(json.loads(bodies[3])["visitors"]) == 2  # the 413 halves
    assert outcome.failed == {"http_401": 2}
    assert stats.delivered == 4 and stats.failed == {"http_401": 2}
    assert stats.dead_letters == {"http_401": 2}
    assert failures[0].response_excerpt == '{"error": "bad"}'
    assert stats.retried == 4 and stats.attempts == 6  # the 413 halves are retries too


def test_retry_age_limit_dead_letters_on_a_dead_port() -> None:
    policy = RetryPolicy(max_attempts=None, backoff_base=0.01, backoff_max=0.05, max_retry_age=0.3)

    async def main() -> Any:
        async with AsyncDispatcher(
            endpoint=closed_port_url(), retry=policy, flush_interval=0.05
        ) as d:
            d.dispatch_event(event())
            await d.flush(5)
            return d.stats()

    stats = run(main)
    assert stats.failed == {"retry_age_exceeded": 1}
    assert stats.last_error is not None and "network" in stats.last_error


# -- deadlines, closing, memory bound ---------------------------------------------------------


def test_flush_and_aclose_deadlines_hold_with_a_silent_server() -> None:
    with silent_server() as url:

        async def main() -> None:
            d = AsyncDispatcher(endpoint=url, timeout=30, flush_interval=0.01)
            for _ in range(10):
                d.dispatch_event(event())
            await asyncio.sleep(0.1)
            assert d.stats().in_flight == 1
            started = time.monotonic()
            outcome = await d.flush(0.3)
            assert 0.25 <= time.monotonic() - started < 1.0
            assert outcome.pending == 10
            started = time.monotonic()
            outcome = await d.aclose(0.3)
            assert time.monotonic() - started < 1.5
            assert outcome.pending == 10
            stats = d.stats()
            assert stats.in_flight == 0  # the cancelled request is accounted for
            assert stats.dropped == {"unsent_at_close": 10}
            assert (await d.aclose(1.0)).pending == 0  # idempotent
            d.dispatch_event(event(n=2))
            assert d.stats().dropped["closed"] == 2

        run(main, timeout=20)


def test_memory_is_bounded_and_drops_are_counted() -> None:
    async def main() -> Any:
        async with AsyncDispatcher(
            endpoint=closed_port_url(),
            max_queue_events=200,
            retry=FAST_RETRY,
            flush_interval=0.01,
        ) as d:
            for _ in range(1000):
                d.dispatch_event(event())
            stats = d.stats()
            outcome = await d.aclose(0.2)
            return stats, outcome

    stats, outcome = run(main)
    assert stats.queue_depth <= 201 and stats.visitors == 1000
    assert stats.dropped_total >= 790 and set(stats.dropped) == {"queue_full"}
    assert outcome.pending > 0


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"overflow": "block"}, "overflow"),
        ({"durability": "always", "spool": "sqlite:///unused.db"}, "durability"),
        ({"http_client": httpx.Client()}, "http_client"),
        ({"batch_size": 0}, "batch_size"),
        ({"flush_interval": float("nan")}, "flush_interval"),
        ({"max_batch_bytes": 4_000_000}, "max_batch_bytes"),
        ({"max_concurrent_requests": 65}, "max_concurrent_requests"),
        ({"timeout": 0}, "timeout"),
        ({"retry": 3}, "retry"),
        ({"gzip": 1}, "gzip"),
        ({"on_success": "x"}, "on_success"),
        ({"endpoint": "ftp://x"}, "endpoint"),
        ({"spool": "mysql://x"}, "spool"),
    ],
)
def test_config_errors_name_the_argument(kwargs: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        AsyncDispatcher(**kwargs)


def test_flush_and_aclose_need_a_finite_timeout() -> None:
    async def main() -> None:
        d = AsyncDispatcher(endpoint=closed_port_url())
        for bad in (None, float("inf"), -1):
            with pytest.raises(ConfigError, match="timeout"):
                await d.flush(bad)  # type: ignore[arg-type]
            with pytest.raises(ConfigError, match="timeout"):
                await d.aclose(bad)  # type: ignore[arg-type]
        await d.aclose(1)

    run(main)


# -- loops and threads ---------------------------------------------------------------------------


def test_lazy_start_on_the_running_loop_and_queue_before_any_loop(
    collector: CollectorHandle,
) -> None:
    d = AsyncDispatcher(endpoint=collector.base_url, flush_interval=0.05)
    d.dispatch_event(event())  # no running loop: queued
    assert d.loop is None

    async def main() -> Any:
        d.dispatch_event(event())  # first dispatch on a loop starts the senders
        assert d.loop is asyncio.get_running_loop()
        collector.reset()
        for _ in range(50):
            await asyncio.sleep(0.02)
            if collector.stats()["unique_events"] == 2:
                break
        return await d.aclose(5)

    outcome = run(main)
    assert outcome.pending == 0
    assert collector.stats()["unique_events"] == 2


def test_dispatch_from_other_threads_while_the_loop_runs(collector: CollectorHandle) -> None:
    async def main() -> Any:
        async with AsyncDispatcher(endpoint=collector.base_url, max_queue_events=50_000) as d:
            loop = asyncio.get_running_loop()
            wakes = 0
            original = loop.call_soon_threadsafe

            def counting(*args: Any, **kwargs: Any) -> Any:
                nonlocal wakes
                wakes += 1
                return original(*args, **kwargs)

            loop.call_soon_threadsafe = counting  # type: ignore[method-assign]

            def produce() -> None:
                for _ in range(2000):
                    d.dispatch_event(event())

            await asyncio.gather(*(asyncio.to_thread(produce) for _ in range(4)))
            loop.call_soon_threadsafe = original  # type: ignore[method-assign]
            outcome = await d.flush(20)
            return outcome, d.stats(), wakes

    outcome, stats, wakes = run(main)
    assert outcome.pending == 0
    assert stats.calls == stats.visitors == stats.delivered == 8000
    assert wakes < 8000 / 2, wakes  # the loop is woken when needed, not per event
    assert collector.stats()["unique_events"] == 8000


def test_a_second_running_loop_is_refused_and_a_new_loop_after_the_first_works(
    collector: CollectorHandle,
) -> None:
    d = AsyncDispatcher(endpoint=collector.base_url, flush_interval=0.05)

    async def first() -> None:
        await d.start()
        d.dispatch_event(event())
        assert (await d.flush(5)).pending == 0

    asyncio.run(first())  # that loop is now closed

    async def second() -> None:
        d.dispatch_event(event())
        assert (await d.flush(5)).pending == 0
        other = threading.Thread(target=lambda: asyncio.run(refused()))
        other.start()
        other.join(10)
        await d.aclose(5)

    errors: list[Exception] = []

    async def refused() -> None:
        try:
            await d.start()
        except ConfigError as exc:
            errors.append(exc)

    asyncio.run(second())
    assert len(errors) == 1 and "another event loop" in str(errors[0])
    assert collector.stats()["unique_events"] == 2


def test_user_http_client_is_used_and_not_closed(collector: CollectorHandle) -> None:
    async def main() -> None:
        seen: list[str] = []

        async def hook(request: httpx.Request) -> None:
            seen.append(str(request.url))

        async with httpx.AsyncClient(event_hooks={"request": [hook]}) as client:
            async with AsyncDispatcher(endpoint=collector.base_url, http_client=client) as d:
                d.dispatch_event(event())
                assert (await d.flush(5)).pending == 0
            assert not client.is_closed
            assert seen == [collector.events_url]

    run(main)


# -- durable spool: the loop never does spool I/O ----------------------------------------------


def test_durable_sqlite_spool_delivers_with_spool_io_off_the_loop(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    threads: set[int] = set()

    async def main() -> Any:
        d = AsyncDispatcher(
            endpoint=collector.base_url,
            spool=f"sqlite:///{tmp_path / 'events.db'}",
            flush_interval=0.05,
        )
        store = d.spool.store  # type: ignore[attr-defined]  # SpoolFront -> SqliteSpool
        for name in ("append", "claim", "ack", "retry", "stats", "next_due_at"):
            method = getattr(store, name)

            def spy(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
                threads.add(threading.get_ident())
                return _method(*args, **kwargs)

            setattr(store, name, spy)
        loop_thread = threading.get_ident()
        async with d:
            for _ in range(500):
                d.dispatch_event(event())
            outcome = await d.flush(20)
        stats = await asyncio.to_thread(d.stats)
        return outcome, stats, loop_thread

    outcome, stats, loop_thread = run(main)
    assert outcome.pending == 0
    assert stats.delivered == 500 and stats.durable and stats.spool_url.startswith("sqlite")
    assert collector.stats()["unique_events"] == 500
    assert threads and loop_thread not in threads


def test_durable_spool_keeps_what_could_not_be_sent_for_the_next_run(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    """Visitors still failing at aclose() stay in SQLite; the next dispatcher sends them."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    collector.control(fail_rate=1.0)

    async def first() -> Any:
        # lease=0.5: a request still in flight at aclose() is cancelled and its visitors
        # stay leased until the lease expires; the next run must not wait 30 s for them.
        d = AsyncDispatcher(
            endpoint=collector.base_url,
            spool=url,
            retry=FAST_RETRY,
            flush_interval=0.01,
            lease=0.5,
        )
        for _ in range(100):
            d.dispatch_event(event())
        await asyncio.sleep(0.3)
        return await d.aclose(0.5)

    async def second() -> int:
        async with AsyncDispatcher(
            endpoint=collector.base_url, spool=url, retry=FAST_RETRY, lease=0.5
        ) as d:
            return (await d.flush(15)).delivered

    closed = run(first)
    assert closed.pending == 100 and closed.dropped == {}
    collector.control(fail_rate=0.0)
    assert run(second) == 100
    assert collector.wait_for(unique_events=100, timeout=10)["unique_events"] == 100


# -- in an application ----------------------------------------------------------------------------


def test_official_sdk_calls_it_from_its_own_thread(
    collector: CollectorHandle, datafile_text: str
) -> None:
    from optimizely import optimizely

    logging.getLogger("optimizely").setLevel(logging.ERROR)

    async def main() -> Any:
        async with AsyncDispatcher(endpoint=collector.base_url) as d:
            sdk = optimizely.Optimizely(datafile_text, event_dispatcher=d)
            callers: set[int] = set()
            original = d.dispatch_event

            def spy(event: Any) -> None:
                callers.add(threading.get_ident())
                original(event)

            d.dispatch_event = spy  # type: ignore[method-assign]
            for i in range(300):
                sdk.activate("homepage_hero_copy", f"user-{i}")
                sdk.track("purchase", f"user-{i}", event_tags={"revenue": 1299})
                if i % 50 == 0:
                    await asyncio.sleep(0)
            await asyncio.to_thread(sdk.close)  # its processor flushes into our queue
            outcome = await d.flush(20)
            return outcome, callers

    outcome, callers = run(main)
    assert outcome.pending == 0
    assert threading.get_ident() not in callers  # the SDK's own thread called us
    assert collector.wait_for(unique_events=600, timeout=20)["duplicates"] == 0


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def test_starlette_app_under_load_keeps_the_loop_responsive(collector: CollectorHandle) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    dispatcher = AsyncDispatcher(endpoint=collector.base_url, flush_interval=0.05)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with dispatcher:
            yield

    async def activate(request: Request) -> Response:
        dispatcher.dispatch_event(event())
        return Response(status_code=204)

    app = Starlette(routes=[Route("/activate", activate, methods=["POST"])], lifespan=lifespan)
    requests = 3000

    async def main() -> list[float]:
        lags: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            loop = asyncio.get_running_loop()
            while not stop.is_set():
                expected = loop.time() + 0.001
                await asyncio.sleep(0.001)
                lags.append(loop.time() - expected)

        async with serve(app) as base:
            tick = asyncio.create_task(ticker())
            async with httpx.AsyncClient(base_url=base, trust_env=False) as http:
                queue = iter(range(requests))

                async def worker() -> None:
                    for _ in queue:
                        response = await http.post("/activate")
                        assert response.status_code == 204

                await asyncio.gather(*(worker() for _ in range(16)))
            stop.set()
            await tick
        return lags

    lags = run(main, timeout=120)
    assert collector.wait_for(unique_events=requests, timeout=20)["unique_events"] == requests
    stats = dispatcher.stats()
    assert stats.delivered == requests and stats.dropped == {}
    # Gross bound only (bench/aio.py measures the real figure): a loop blocked by the
    # dispatcher (a send, a spool write) would stall for a request timeout, seconds.
    assert max(lags) < 1.0, max(lags)


def test_both_dispatchers_share_one_core() -> None:
    """The batching rules are not forked: both drivers run DispatchCore."""
    sync = BatchDispatcher(endpoint=closed_port_url(), atexit_timeout=None)
    aio = AsyncDispatcher(endpoint=closed_port_url())
    try:
        assert type(sync._core) is type(aio._core) is DispatchCore
        assert not sync._core.options.on_event_loop and aio._core.options.on_event_loop
    finally:
        sync.close(0.1)
        run(lambda: aio.aclose(0.1))
