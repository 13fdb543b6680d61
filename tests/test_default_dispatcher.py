from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import httpx
import pytest

from xpevents.dispatch.default import DefaultEventDispatcher
from xpevents.errors import ConfigError, DispatchError
from xpevents.events.model import LogEvent
from xpevents.send.retry import RetryPolicy
from xpevents.testing import CollectorHandle

from servers import Reply, closed_port_url, scripted_server, silent_server

FAST = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.02)


def payload(n: int = 1) -> dict[str, Any]:
    return {
        "account_id": "1",
        "project_id": "2",
        "revision": "3",
        "client_name": "test",
        "client_version": "0",
        "anonymize_ip": False,
        "enrich_decisions": True,
        "visitors": [
            {
                "visitor_id": f"user-{i}",
                "attributes": [],
                "snapshots": [
                    {"events": [{"entity_id": "9", "uuid": f"u{i}", "key": "k", "timestamp": 1}]}
                ],
            }
            for i in range(n)
        ],
    }


def test_post_sends_compact_json_with_the_event_headers() -> None:
    with scripted_server() as server, DefaultEventDispatcher() as dispatcher:
        params = payload(2)
        before = json.dumps(params)
        dispatcher.dispatch_event(LogEvent(server.url, params, headers={"X-Test": "yes"}))
        [got] = server.received
        assert got.method == "POST"
        assert json.loads(got.body) == params
        assert b", " not in got.body and b": " not in got.body  # compact
        assert got.headers["X-Test"] == "yes"
        assert json.dumps(params) == before  # never modified
        stats = dispatcher.stats()
        assert (stats.calls, stats.visitors, stats.delivered, stats.attempts) == (1, 2, 2, 1)
        assert stats.batches_sent == 1
        assert stats.bytes_sent == len(got.body)
        assert stats.last_success_at is not None and stats.last_success_at <= time.time()


def test_default_headers_are_json() -> None:
    with scripted_server() as server, DefaultEventDispatcher() as dispatcher:
        dispatcher.dispatch_event(LogEvent(server.url, payload()))
        assert server.received[0].headers["Content-Type"] == "application/json"


def test_get_sends_params_as_query_string() -> None:
    with scripted_server() as server, DefaultEventDispatcher() as dispatcher:
        dispatcher.dispatch_event(LogEvent(server.url, {"a": "1", "b": "x y"}, http_verb="GET"))
        [got] = server.received
        assert got.method == "GET"
        assert got.path == "/v1/events?a=1&b=x+y"


def test_one_keep_alive_connection_for_many_events() -> None:
    with scripted_server() as server, DefaultEventDispatcher() as dispatcher:
        for _ in range(20):
            dispatcher.dispatch_event(LogEvent(server.url, payload()))
        assert len(server.received) == 20
        assert server.connections == 1


def test_transient_failures_are_retried_for_post() -> None:
    replies = [Reply(503), Reply(500)]
    with scripted_server(*replies) as server, DefaultEventDispatcher(retry=FAST) as dispatcher:
        dispatcher.dispatch_event(LogEvent(server.url, payload()))
        assert len(server.received) == 3
        assert len({r.body for r in server.received}) == 1  # the same payload each time
        stats = dispatcher.stats()
        assert (stats.attempts, stats.retried, stats.delivered) == (3, 2, 1)
        assert stats.failed == {}


@pytest.mark.parametrize("status", [408, 429, 502])
def test_each_transient_status_is_retried(status: int) -> None:
    with scripted_server(Reply(status)) as server, DefaultEventDispatcher(retry=FAST) as d:
        d.dispatch_event(LogEvent(server.url, payload()))
        assert len(server.received) == 2
        assert d.stats().delivered == 1


def test_retry_after_is_honoured() -> None:
    reply = Reply(429, headers={"Retry-After": "0.4"})
    with scripted_server(reply) as server, DefaultEventDispatcher(retry=FAST) as d:
        started = time.monotonic()
        d.dispatch_event(LogEvent(server.url, payload()))
        assert time.monotonic() - started >= 0.4
        assert d.stats().delivered == 1


def test_retry_after_longer_than_time_left_fails_without_waiting() -> None:
    reply = Reply(503, headers={"Retry-After": "30"})
    failures: list[DispatchError] = []
    with (
        scripted_server(reply) as server,
        DefaultEventDispatcher(
            timeout=2, retry=FAST, on_failure=lambda e, err: failures.append(err)
        ) as d,
    ):
        started = time.monotonic()
        d.dispatch_event(LogEvent(server.url, payload()))
        assert time.monotonic() - started < 1.5  # no early retry, no waiting either
        assert len(server.received) == 1
        assert d.stats().failed == {"http_503": 1}
        assert "Retry-After" in str(failures[0])


@pytest.mark.parametrize("status", [400, 401, 413])
def test_permanent_failures_are_not_retried(status: int) -> None:
    reply = Reply(status, body=b'{"error": "bad payload"}')
    with scripted_server(reply) as server, DefaultEventDispatcher(retry=FAST) as d:
        d.dispatch_event(LogEvent(server.url, payload(3)))
        assert len(server.received) == 1
        stats = d.stats()
        assert stats.failed == {f"http_{status}": 3}
        assert stats.last_error is not None and str(status) in stats.last_error


def test_raise_on_failure_carries_status_url_reason_and_excerpt() -> None:
    reply = Reply(400, body=b'{"error": "visitors[0] is wrong"}')
    with scripted_server(reply) as server, DefaultEventDispatcher(raise_on_failure=True) as d:
        with pytest.raises(DispatchError) as caught:
            d.dispatch_event(LogEvent(server.url, payload()))
        error = caught.value
        assert error.status == 400
        assert error.url == server.url
        assert error.reason == "http_400"
        assert "visitors[0] is wrong" in error.response_excerpt
        assert error.attempts == 1


def test_failures_are_logged_once_per_event(caplog: pytest.LogCaptureFixture) -> None:
    with DefaultEventDispatcher(retry=FAST) as d, caplog.at_level(logging.WARNING):
        d.dispatch_event(LogEvent(closed_port_url(), payload()))
    lines = [r for r in caplog.records if r.name == "xpevents.dispatch"]
    assert len(lines) == 1
    assert "3 attempts" in lines[0].getMessage()


def test_connection_refused_is_a_network_failure_after_retries() -> None:
    with DefaultEventDispatcher(retry=FAST) as d:
        d.dispatch_event(LogEvent(closed_port_url(), payload()))
        stats = d.stats()
        assert stats.failed == {"network": 1}
        assert (stats.attempts, stats.retried) == (3, 2)


def test_a_server_that_never_answers_is_bounded_by_the_timeout() -> None:
    with silent_server() as url, DefaultEventDispatcher(timeout=0.5, retry=FAST) as d:
        started = time.monotonic()
        d.dispatch_event(LogEvent(url, payload()))
        elapsed = time.monotonic() - started
        assert elapsed < 5  # 10x margin on the 0.5 s deadline
        assert d.stats().failed == {"timeout": 1}


def test_callbacks_and_a_raising_callback() -> None:
    seen: list[str] = []

    def boom(event: object) -> None:
        raise RuntimeError("listener bug")

    with scripted_server(Reply(204), Reply(400)) as server:
        with DefaultEventDispatcher(
            on_success=boom, on_failure=lambda e, err: seen.append(err.reason)
        ) as d:
            d.dispatch_event(LogEvent(server.url, payload()))  # success, callback raises
            d.dispatch_event(LogEvent(server.url, payload()))  # 400
            d.dispatch_event(LogEvent(server.url, payload()))  # default 204: still works
            stats = d.stats()
        assert seen == ["http_400"]
        assert stats.callback_errors == 2  # both successes ran the raising callback
        assert stats.delivered == 2


def test_non_serialisable_params_fail_without_a_request() -> None:
    with scripted_server() as server, DefaultEventDispatcher() as d:
        d.dispatch_event(LogEvent(server.url, {"visitors": [{"x": 1j}]}))
        d.dispatch_event(LogEvent(server.url, {"bad": object()}))
        assert server.received == []
        assert d.stats().failed == {"serialize": 2}
        d.dispatch_event(LogEvent(server.url, payload()))  # good events still flow
        assert d.stats().delivered == 1


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/v1/events", "not a url", ""])
def test_event_url_must_be_http(url: str) -> None:
    with DefaultEventDispatcher() as d:
        d.dispatch_event(LogEvent(url, payload()))
        assert d.stats().failed == {"invalid_url": 1}


def test_not_an_event_is_counted_not_raised() -> None:
    with DefaultEventDispatcher() as d:
        d.dispatch_event(object())
        d.dispatch_event(LogEvent("http://127.0.0.1:1/v1/events", {}, http_verb="PUT"))
        assert d.stats().failed == {"invalid_event": 1, "invalid_verb": 1}


def test_endpoint_overrides_the_event_url_and_maps_eu() -> None:
    with scripted_server() as server, DefaultEventDispatcher(endpoint=server.base_url) as d:
        d.dispatch_event(LogEvent("https://logx.optimizely.com/v1/events", payload()))
        d.dispatch_event(LogEvent("https://eu.logx.optimizely.com/v1/events", payload()))
        assert [r.path for r in server.received] == ["/v1/events", "/eu/v1/events"]
    with scripted_server() as server, DefaultEventDispatcher(endpoint=server.url + "?x=1") as d:
        d.dispatch_event(LogEvent("https://eu.logx.optimizely.com/v1/events", payload()))
        assert server.received[0].path == "/v1/events?x=1"


def test_user_supplied_http_client_is_used_and_not_closed() -> None:
    seen: list[str] = []
    client = httpx.Client(event_hooks={"request": [lambda r: seen.append(str(r.url))]})
    with scripted_server() as server:
        with DefaultEventDispatcher(http_client=client) as d:
            d.dispatch_event(LogEvent(server.url, payload()))
        assert seen == [server.url]
        assert not client.is_closed
    client.close()


def test_accepts_the_official_sdk_event_object() -> None:
    from optimizely.event_builder import Event

    with scripted_server() as server, DefaultEventDispatcher() as d:
        d.dispatch_event(Event(server.url, payload(), http_verb="POST", headers=None))
        assert d.stats().delivered == 1


def test_closed_dispatcher_drops_and_counts() -> None:
    d = DefaultEventDispatcher()
    assert d.close().pending == 0
    assert d.close().complete  # idempotent
    d.dispatch_event(LogEvent("http://127.0.0.1:1/v1/events", payload(2)))
    assert d.stats().dropped == {"closed": 2}


def test_in_flight_is_visible_during_a_request() -> None:
    import threading

    with scripted_server(Reply(204, delay=0.5)) as server, DefaultEventDispatcher() as d:
        t = threading.Thread(target=d.dispatch_event, args=(LogEvent(server.url, payload()),))
        t.start()
        deadline = time.monotonic() + 5
        while d.stats().in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert d.stats().in_flight == 1
        t.join()
        assert d.stats().in_flight == 0


def test_stats_as_dict_is_plain() -> None:
    with DefaultEventDispatcher() as d:
        data = d.stats().as_dict()
    json.dumps(data)
    assert set(data) >= {"calls", "visitors", "attempts", "retried", "delivered", "failed"}
    assert d.flush(0).as_dict() == {
        "delivered": 0,
        "failed": {},
        "dropped": {},
        "pending": 0,
        "delivered_total": 0,
    }


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"timeout": -1}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": "10"}, "timeout"),
        ({"endpoint": "ftp://x"}, "endpoint"),
        ({"retry": 3}, "retry"),
        ({"http_client": httpx.AsyncClient()}, "http_client"),
        ({"on_success": "print"}, "on_success"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as caught:
        DefaultEventDispatcher(**kwargs)
    assert isinstance(caught.value, ValueError)


def test_requests_to_the_real_endpoint_cannot_leave_the_machine(dead_proxy: str) -> None:
    # The suite points the proxy variables at a dead loopback port: a stray request to
    # the real events API is refused on this machine instead of leaving it.
    with DefaultEventDispatcher(retry=RetryPolicy(max_attempts=1), timeout=5) as d:
        started = time.monotonic()
        d.dispatch_event(LogEvent("https://logx.optimizely.com/v1/events", payload()))
        assert time.monotonic() - started < 5
        assert d.stats().failed == {"network": 1}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_works_in_a_forked_child() -> None:
    with scripted_server() as server, DefaultEventDispatcher() as d:
        d.dispatch_event(LogEvent(server.url, payload()))
        pid = os.fork()
        if pid == 0:  # child: a fresh pool, the same dispatcher object
            try:
                d.dispatch_event(LogEvent(server.url, payload()))
                os._exit(0 if d.stats().delivered == 2 else 1)
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert len(server.received) == 2


def test_a_raising_user_transport_fails_the_call_at_once(collector: CollectorHandle) -> None:
    """The caller waits: an unexpected exception is not retried (the batching ones retry)."""
    calls: list[int] = []

    class Broken(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            calls.append(1)
            raise RuntimeError("custom transport bug")

    failures: list[DispatchError] = []
    with (
        httpx.Client(transport=Broken()) as client,
        DefaultEventDispatcher(
            endpoint=collector.base_url,
            http_client=client,
            on_failure=lambda e, err: failures.append(err),
        ) as d,
    ):
        d.dispatch_event(LogEvent("https://logx.optimizely.com/v1/events", payload()))
        stats = d.stats()
    assert len(calls) == 1
    assert stats.attempts == 1 and stats.failed == {"error": 1}
    assert failures[0].reason == "error" and "custom transport bug" in str(failures[0])
