"""BatchDispatcher against the real collector (and scripted servers) on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
import threading
import time
from typing import Any

import msgspec
import pytest

from xpevents import ConfigError, DispatchError, LogEvent, RetryPolicy
from xpevents.dispatch.batch import BatchDispatcher
from xpevents.testing import CollectorHandle, run_collector

from payloads import FAST_RETRY, event, payload, visitor
from servers import Reply, closed_port_url, scripted_server, silent_server


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


# -- delivery and merging ---------------------------------------------------------------


def test_delivers_everything_in_few_requests(collector: CollectorHandle) -> None:
    successes: list[int] = []
    with BatchDispatcher(
        endpoint=collector.base_url, on_success=lambda v: successes.append(len(v))
    ) as bd:
        for _ in range(1000):
            bd.dispatch_event(event())
        bd.dispatch_event(event(n=3))
        outcome = bd.flush(10)
        stats = bd.stats()
    assert outcome.pending == 0
    assert outcome.complete
    assert stats.calls == 1001
    assert stats.visitors == stats.enqueued == stats.delivered == 1003
    assert stats.batches_sent == len(successes) <= 20
    assert sum(successes) == 1003
    assert stats.bytes_sent > 1003 * 200
    assert stats.last_success_at is not None and abs(stats.last_success_at - time.time()) < 60
    assert stats.queue_depth == stats.spool_depth == 0
    assert stats.attempts == stats.batches_sent and stats.retried == 0
    got = collector.stats()
    assert got["unique_events"] == 1003 and got["duplicates"] == 0


def test_merge_rules_and_byte_identical_visitors() -> None:
    """Incompatible envelopes never share a request; visitors are wrapped, not altered."""
    with scripted_server() as server:
        eu = "https://eu.logx.optimizely.com/v1/events"
        variants: list[Any] = [
            lambda: event(),
            lambda: event(project_id="other"),
            lambda: event(revision="8"),
            lambda: event(eu),
            lambda: event(anonymize_ip=True),
            lambda: event(extra={"keep": [1, 2]}),
        ]
        sent: list[LogEvent] = [variants[i % 6]() for i in range(60)]
        with BatchDispatcher(endpoint=server.base_url, flush_interval=0.05) as bd:
            for ev in sent:
                bd.dispatch_event(ev)
            assert bd.flush(10).pending == 0
        bodies = [r.body for r in server.received]
        assert 6 <= len(bodies) <= 12
        by_path = {r.path for r in server.received}
        assert by_path == {"/v1/events", "/eu/v1/events"}
        seen = 0
        for received in server.received:
            doc = json.loads(received.body)
            head = {k: v for k, v in doc.items() if k != "visitors"}
            for ev in sent:
                if ev.params["visitors"][0] in doc["visitors"]:
                    expected = {k: v for k, v in ev.params.items() if k != "visitors"}
                    assert head == expected  # same envelope, every other key kept
                    assert (received.path == "/eu/v1/events") == ev.url.startswith("https://eu.")
                    raw = msgspec.json.encode(ev.params["visitors"][0])
                    assert raw in received.body  # byte-identical
                    seen += 1
        assert seen == 60


def test_non_events_and_bad_payloads_are_counted_never_raised() -> None:
    drops: list[tuple[Any, str]] = []
    with scripted_server() as server:
        bd = BatchDispatcher(
            endpoint=server.base_url,
            flush_interval=0.05,
            on_drop=lambda e, r: drops.append((e, r)),
        )
        bd.dispatch_event(object())
        bd.dispatch_event(LogEvent("not a url", payload([visitor()])))
        bad = payload([{"bad": object()}])
        bd.dispatch_event(LogEvent("https://logx.optimizely.com/v1/events", bad))
        raw = {"hello": "world", "n": [1, 2]}
        bd.dispatch_event(LogEvent("https://logx.optimizely.com/v1/events", raw))
        bd.dispatch_event(LogEvent("https://logx.optimizely.com/v1/events", raw))
        assert bd.flush(5).pending == 0
        stats = bd.stats()
        bd.close()
        assert stats.dropped == {"invalid_event": 1, "invalid_url": 1, "serialize": 1}
        assert [r for _, r in drops] == ["invalid_event", "invalid_url", "serialize"]
        assert stats.calls == 5 and stats.delivered == 2
        assert stats.last_error is not None
        # a payload that is not in the event API format goes as-is, alone
        assert [r.body for r in server.received] == [msgspec.json.encode(raw)] * 2


def test_gzip_is_accepted_by_the_collector(collector: CollectorHandle) -> None:
    with BatchDispatcher(endpoint=collector.base_url, gzip=True) as plain_check:
        for _ in range(300):
            plain_check.dispatch_event(event())
        assert plain_check.flush(10).pending == 0
        stats = plain_check.stats()
    got = collector.stats()
    assert got["unique_events"] == 300
    assert stats.bytes_sent < got["bytes_received"] or stats.bytes_sent < 300 * 100


def test_gzip_header_and_body() -> None:
    with scripted_server() as server, BatchDispatcher(endpoint=server.base_url, gzip=True) as bd:
        ev = event()
        bd.dispatch_event(ev)
        assert bd.flush(5).pending == 0
        (received,) = server.received
        assert received.headers["Content-Encoding"] == "gzip"
        assert json.loads(gzip.decompress(received.body)) == ev.params


# -- 413 and sizes ----------------------------------------------------------------------


def test_413_splits_the_batch_and_dead_letters_a_lone_visitor() -> None:
    with run_collector(max_body=40_000) as collector:
        failures: list[tuple[list[bytes], DispatchError]] = []
        bd = BatchDispatcher(
            endpoint=collector.base_url,
            batch_size=1000,
            flush_interval=0.05,
            on_failure=lambda v, e: failures.append((v, e)),
        )
        for _ in range(400):
            bd.dispatch_event(event())
        bd.dispatch_event(event(pad=50_000))
        outcome = bd.flush(20)
        stats = bd.stats()
        bd.close()
        assert outcome.pending == 0
        assert collector.stats()["unique_events"] == 400
        assert stats.delivered == 400
        assert stats.failed == {"http_413": 1}
        assert stats.dead_letters == {"http_413": 1}
        assert len(failures) == 1 and failures[0][1].status == 413
        assert len(failures[0][0]) == 1
        assert collector.stats()["too_large"] >= 2


def test_visitor_over_the_api_limit_is_dead_lettered_without_a_request() -> None:
    with scripted_server() as server:
        with BatchDispatcher(endpoint=server.base_url, flush_interval=0.05) as bd:
            bd.dispatch_event(event(pad=3_600_000))
            small = event()
            bd.dispatch_event(small)
            bd.flush(10)
            stats = bd.stats()
        assert stats.failed == {"too_large": 1}
        assert stats.delivered == 1
        assert len(server.received) == 1


def test_batches_respect_max_batch_bytes_and_a_big_visitor_goes_alone() -> None:
    with scripted_server() as server:
        with BatchDispatcher(
            endpoint=server.base_url, max_batch_bytes=20_000, batch_size=10_000, flush_interval=0.05
        ) as bd:
            for _ in range(200):
                bd.dispatch_event(event())
            bd.dispatch_event(event(pad=30_000))
            assert bd.flush(10).pending == 0
        sizes = [len(r.body) for r in server.received]
        assert sum(len(json.loads(r.body)["visitors"]) for r in server.received) == 201
        assert all(size <= 20_000 for size in sizes if size < 30_000)
        assert any(size > 30_000 for size in sizes)


# -- retries ------------------------------------------------------------------------------


def test_no_loss_under_faults() -> None:
    total = 5000
    with run_collector(fail_rate=0.3, rate_429=0.1, retry_after=1, drop_rate=0.05, seed=3) as c:
        bd = BatchDispatcher(
            endpoint=c.base_url,
            retry=FAST_RETRY,
            max_batch_bytes=64 * 1024,
            flush_interval=0.05,
            max_queue_events=total,
            timeout=5,
        )
        for _ in range(total):
            bd.dispatch_event(event())
        outcome = bd.flush(90)
        stats = bd.stats()
        bd.close(5)
        got = c.stats()
    assert outcome.pending == 0, outcome
    assert got["unique_events"] == total
    assert stats.delivered == total
    assert stats.retried > 0 and stats.attempts > stats.batches_sent
    assert stats.failed == {} and stats.dropped == {}
    print(f"duplicates received: {got['duplicates']}; requests {got['requests']}")


def test_retry_after_is_honoured_and_retries_resend_the_same_bytes() -> None:
    with scripted_server(Reply(429, {"Retry-After": "1"}), Reply(503)) as server:
        with BatchDispatcher(endpoint=server.base_url, retry=FAST_RETRY, flush_interval=0.05) as bd:
            started = time.monotonic()
            for _ in range(5):
                bd.dispatch_event(event())
            assert bd.flush(10).pending == 0
            elapsed = time.monotonic() - started
            stats = bd.stats()
        assert elapsed >= 1.0
        assert [len(r.body) for r in server.received].count(len(server.received[0].body)) == 3
        assert server.received[0].body == server.received[1].body == server.received[2].body
        assert stats.retried == 2 and stats.attempts == 3 and stats.delivered == 5


def test_retry_after_longer_than_allowed_is_dead_lettered() -> None:
    with scripted_server(Reply(429, {"Retry-After": "600"})) as server:
        with BatchDispatcher(endpoint=server.base_url, flush_interval=0.05) as bd:
            bd.dispatch_event(event())
            bd.flush(5)
            stats = bd.stats()
        assert stats.failed == {"retry_after_too_long": 1}
        assert len(server.received) == 1


def test_other_4xx_fail_at_once() -> None:
    failures: list[DispatchError] = []
    with (
        scripted_server(Reply(401, body=b'{"error": "bad"}')) as server,
        BatchDispatcher(
            endpoint=server.base_url,
            flush_interval=0.05,
            on_failure=lambda v, e: failures.append(e),
        ) as bd,
    ):
        bd.dispatch_event(event(n=2))
        outcome = bd.flush(5)
        stats = bd.stats()
        letters = bd.spool.dead_letters()
    assert outcome.failed == {"http_401": 2}
    assert stats.failed == {"http_401": 2} and stats.dead_letters == {"http_401": 2}
    assert len(letters) == 2 and letters[0].reason == "http_401"
    assert failures[0].response_excerpt == '{"error": "bad"}'
    assert len(server.received) == 1
    assert stats.last_error is not None and "HTTP 401" in stats.last_error


def test_a_400_batch_is_split_so_only_the_bad_visitor_is_dead_lettered() -> None:
    """One visitor the upstream refuses must not take nine others down with it."""
    failures: list[DispatchError] = []
    with scripted_server() as server:
        server.judge = lambda body: Reply(400, body=b"bad visitor") if b"poison" in body else None
        with BatchDispatcher(
            endpoint=server.base_url,
            batch_size=10,
            flush_interval=5,
            on_failure=lambda v, e: failures.append(e),
        ) as bd:
            for index in range(10):
                one = visitor()
                if index == 6:
                    one["visitor_id"] = "poison"
                bd.dispatch_event(LogEvent("https://logx.optimizely.com/v1/events", payload([one])))
            outcome = bd.flush(10)
            stats = bd.stats()
    assert outcome.delivered == 9 and outcome.failed == {"http_400": 1}
    assert stats.dead_letters == {"http_400": 1} and stats.splits >= 1
    assert len(server.received) <= 2 * 10 - 1
    assert len(failures) == 1 and failures[0].status == 400


def test_retry_age_limit_dead_letters() -> None:
    policy = RetryPolicy(max_attempts=None, backoff_base=0.01, backoff_max=0.05, max_retry_age=0.3)
    with BatchDispatcher(endpoint=closed_port_url(), retry=policy, flush_interval=0.05) as bd:
        bd.dispatch_event(event())
        bd.flush(5)
        stats = bd.stats()
    assert stats.failed == {"retry_age_exceeded": 1}


def test_circuit_breaker_backs_off_a_failing_endpoint_and_recovers() -> None:
    policy = RetryPolicy(max_attempts=None, backoff_base=0.05, backoff_max=0.4, max_retry_age=60)
    with scripted_server() as server:
        server.default = Reply(503)
        bd = BatchDispatcher(
            endpoint=server.base_url,
            retry=policy,
            flush_interval=0.01,
            batch_size=1,
            circuit_threshold=3,
            max_concurrent_requests=4,
        )
        for _ in range(50):
            bd.dispatch_event(event())
            time.sleep(0.01)
        time.sleep(1.0)
        stats = bd.stats()
        assert stats.circuits_open == 1
        # 50 batches, yet while the circuit is open only probes go out
        assert stats.attempts < 40, stats.attempts
        server.default = Reply(204)
        outcome = bd.flush(10)
        assert outcome.pending == 0
        assert bd.stats().circuits_open == 0
        assert bd.stats().delivered == 50
        bd.close()


# -- caller latency, bounded memory, deadlines ----------------------------------------------


def test_caller_latency_does_not_depend_on_endpoint_latency() -> None:
    with run_collector(latency_ms=500) as collector:
        bd = BatchDispatcher(endpoint=collector.base_url, batch_size=10, flush_interval=0.01)
        worst = 0.0
        for _ in range(300):
            ev = event()
            started = time.perf_counter()
            bd.dispatch_event(ev)
            worst = max(worst, time.perf_counter() - started)
            time.sleep(0.001)
        assert worst < 0.05, worst
        bd.flush(10)
        bd.close(5)
        assert collector.stats()["unique_events"] == 300


@pytest.mark.parametrize("overflow", ["drop_newest", "drop_oldest", "block"])
def test_memory_is_bounded_under_a_dead_endpoint(overflow: str) -> None:
    drops: list[tuple[Any, str]] = []
    bd = BatchDispatcher(
        endpoint=closed_port_url(),
        max_queue_events=200,
        overflow=overflow,
        block_timeout=0.002,
        retry=FAST_RETRY,
        flush_interval=0.01,
        on_drop=lambda e, r: drops.append((e, r)),
    )
    events = [event() for _ in range(1000)]
    started = time.monotonic()
    for ev in events:
        bd.dispatch_event(ev)
    elapsed = time.monotonic() - started
    stats = bd.stats()
    assert stats.queue_depth <= 201
    assert stats.visitors == 1000
    dropped = stats.dropped_total
    assert dropped >= 790
    assert dropped == len(drops)
    reason = {
        "drop_newest": "queue_full",
        "drop_oldest": "queue_full_oldest",
        "block": "block_timeout",
    }[overflow]
    if overflow == "drop_oldest":
        # Evicting the oldest needs something queued that is not in flight; when every
        # held visitor is being sent at that instant, the newest is refused instead.
        assert reason in stats.dropped
        assert set(stats.dropped) <= {reason, "queue_full"}
    else:
        assert set(stats.dropped) == {reason}
    if overflow == "drop_oldest":
        assert all(isinstance(item, bytes) for item, r in drops if r == reason)
        # the newest were kept
        kept = msgspec.json.encode(events[-1].params["visitors"][0])
        assert all(item != kept for item, r in drops if r == reason)
    else:
        assert all(isinstance(item, LogEvent) for item, _ in drops)
    if overflow == "block":
        assert elapsed < 0.002 * 1000 + 5
    outcome = bd.close(0.2)
    assert outcome.pending > 0
    assert bd.stats().dropped.get("unsent_at_close", 0) == outcome.pending


def test_flush_and_close_deadlines_hold_with_a_silent_server() -> None:
    with silent_server() as url:
        bd = BatchDispatcher(endpoint=url, timeout=30, flush_interval=0.01)
        for _ in range(10):
            bd.dispatch_event(event())
        time.sleep(0.1)
        assert bd.stats().in_flight == 1
        started = time.monotonic()
        outcome = bd.flush(0.3)
        assert 0.25 <= time.monotonic() - started < 1.0
        assert outcome.pending == 10
        started = time.monotonic()
        outcome = bd.close(0.3)
        assert time.monotonic() - started < 1.0
        assert outcome.pending == 10
        assert bd.close(1.0).pending == 0  # idempotent


def test_dispatch_after_close_is_dropped_and_counted() -> None:
    bd = BatchDispatcher(endpoint=closed_port_url())
    bd.close(1)
    bd.dispatch_event(event(n=2))
    stats = bd.stats()
    assert stats.dropped == {"closed": 2}
    assert stats.calls == 1 and stats.visitors == 2


def test_callback_errors_are_counted() -> None:
    def boom(*args: Any) -> None:
        raise RuntimeError("user bug")

    with (
        scripted_server() as server,
        BatchDispatcher(endpoint=server.base_url, flush_interval=0.01, on_success=boom) as bd,
    ):
        bd.dispatch_event(event())
        bd.flush(5)
        assert bd.stats().callback_errors == 1


def test_stats_snapshot_fields_while_retrying() -> None:
    with scripted_server() as server:
        server.default = Reply(503)
        bd = BatchDispatcher(
            endpoint=server.base_url,
            flush_interval=0.01,
            retry=RetryPolicy(max_attempts=None, backoff_base=5, backoff_max=5, max_retry_age=60),
        )
        bd.dispatch_event(event())
        wait_until(lambda: bd.stats().attempts >= 1)
        wait_until(lambda: bd.stats().in_flight == 0)
        stats = bd.stats()
        assert stats.spool_depth == stats.queue_depth == 1
        assert stats.spool_oldest_age is not None and stats.spool_oldest_age >= 0
        assert stats.spool_url == "memory://" and not stats.durable
        assert not stats.durability_suspended
        assert stats.last_error is not None and "503" in stats.last_error
        assert stats.as_dict()["failed"] == {}
        bd.close(0.1)


def test_concurrent_producers_count_exactly(collector: CollectorHandle) -> None:
    bd = BatchDispatcher(endpoint=collector.base_url, max_queue_events=50_000)

    def produce() -> None:
        for _ in range(2000):
            bd.dispatch_event(event())

    threads = [threading.Thread(target=produce) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bd.flush(20).pending == 0
    stats = bd.stats()
    bd.close()
    assert stats.calls == stats.visitors == stats.delivered == 8000
    assert collector.stats()["unique_events"] == 8000


def test_serverless_flush_per_invocation(collector: CollectorHandle) -> None:
    """The Lambda pattern: flush before the handler returns; the next freeze loses nothing."""
    bd = BatchDispatcher(endpoint=collector.base_url, flush_interval=60, atexit_timeout=None)

    def handler(request_number: int) -> int:
        for _ in range(request_number % 5 + 1):
            bd.dispatch_event(event())
        return bd.flush(timeout=2.0).pending

    expected = 0
    for invocation in range(20):
        assert handler(invocation) == 0
        expected += invocation % 5 + 1
        assert collector.stats()["unique_events"] == expected
    bd.close()


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"flush_interval": -1}, "flush_interval"),
        ({"flush_interval": float("inf")}, "flush_interval"),
        ({"max_batch_bytes": 4_000_000}, "max_batch_bytes"),
        ({"max_queue_events": 0}, "max_queue_events"),
        ({"overflow": "spill"}, "overflow"),
        ({"block_timeout": float("nan")}, "block_timeout"),
        ({"max_concurrent_requests": 0}, "max_concurrent_requests"),
        ({"max_concurrent_requests": 1000}, "max_concurrent_requests"),
        ({"timeout": 0}, "timeout"),
        ({"retry": 3}, "retry"),
        ({"http_client": object()}, "http_client"),
        ({"gzip": "yes"}, "gzip"),
        ({"lease": 0}, "lease"),
        ({"circuit_threshold": 0}, "circuit_threshold"),
        ({"atexit_timeout": 0}, "atexit_timeout"),
        ({"on_drop": 1}, "on_drop"),
        ({"on_failure": "x"}, "on_failure"),
        ({"endpoint": "ftp://x"}, "endpoint"),
        ({"spool": "mysql://x"}, "spool"),
        ({"durability": "sometimes"}, "durability"),
    ],
)
def test_config_errors_name_the_argument(kwargs: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        BatchDispatcher(**kwargs)


def test_flush_and_close_need_a_finite_timeout() -> None:
    bd = BatchDispatcher(endpoint=closed_port_url())
    for bad in (None, float("inf"), -1):
        with pytest.raises(ConfigError, match="timeout"):
            bd.flush(bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="timeout"):
            bd.close(bad)  # type: ignore[arg-type]
    bd.close(1)
