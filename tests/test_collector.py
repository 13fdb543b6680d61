"""The collector's HTTP behaviour, against a real server on an ephemeral loopback port."""

from __future__ import annotations

import copy
import gzip
import json
import os
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from xpevents.collector import Collector, CollectorServer
from xpevents.collector.cli import collector_command
from xpevents.serving.body import BodyRejected, GzipInflater
from xpevents.testing import CollectorHandle

DEFAULT_CONTROL = {
    "latency_ms": 0.0,
    "fail_rate": 0.0,
    "rate_429": 0.0,
    "retry_after": 1.0,
    "drop_rate": 0.0,
    "html_rate": 0.0,
    "seed": None,
}
MAX_BODY = 200_000


def impression(visitor: str, uuid: str, exp: str = "e1", var: str | None = "v1") -> dict[str, Any]:
    return {
        "visitor_id": visitor,
        "attributes": [{"entity_id": "a1", "key": "country", "type": "custom", "value": "US"}],
        "snapshots": [
            {
                "decisions": [
                    {"campaign_id": f"c-{exp}", "experiment_id": exp, "variation_id": var}
                ],
                "events": [
                    {
                        "entity_id": f"c-{exp}",
                        "uuid": uuid,
                        "key": "campaign_activated",
                        "timestamp": 1_700_000_000_000,
                    }
                ],
            }
        ],
    }


def conversion(visitor: str, uuid: str, key: str = "purchase", revenue: int | None = None) -> Any:
    event: dict[str, Any] = {
        "entity_id": "20600000001",
        "uuid": uuid,
        "key": key,
        "timestamp": 1_700_000_000_001,
    }
    if revenue is not None:
        event.update(revenue=revenue, tags={"revenue": revenue})
    return {"visitor_id": visitor, "attributes": [], "snapshots": [{"events": [event]}]}


def payload(*visitors: dict[str, Any]) -> dict[str, Any]:
    return {
        "account_id": "1",
        "project_id": "2",
        "revision": "3",
        "client_name": "python-sdk",
        "client_version": "5.7.0",
        "anonymize_ip": True,
        "enrich_decisions": True,
        "visitors": list(visitors),
    }


GOOD = payload(impression("u1", "uuid-1"))
_GOOD_JSON = json.dumps(GOOD).encode()


@pytest.fixture(scope="module")
def server() -> Iterator[CollectorServer]:
    collector = Collector(max_body=MAX_BODY, strict="refuse")
    with CollectorServer(collector, port=0) as srv:
        yield srv
    collector.close()


@pytest.fixture
def handle(server: CollectorServer) -> Iterator[CollectorHandle]:
    h = CollectorHandle(server.url, os.getpid())
    h.control(**DEFAULT_CONTROL)
    h.reset()
    yield h
    h.control(**DEFAULT_CONTROL)
    h.close()


@pytest.fixture
def http(handle: CollectorHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=handle.base_url, trust_env=False, timeout=10) as client:
        yield client


def test_accepts_stores_and_counts(handle: CollectorHandle, http: httpx.Client) -> None:
    body = payload(
        impression("u1", "i1", "e1", "v1"),
        impression("u2", "i2", "e1", "v2"),
        impression("u3", "i3", "e2", None),
        conversion("u1", "c1", revenue=500),
        conversion("u2", "c2", revenue=250),
        conversion("u2", "c3", key="signup"),
    )
    response = http.post("/v1/events", json=body)
    assert response.status_code == 204
    assert response.content == b""
    assert http.post("/eu/v1/events", json=payload(conversion("u9", "c9"))).status_code == 204
    stats = handle.stats()
    assert stats["requests"] == 2
    assert stats["requests_by_status"] == {"204": 2}
    assert stats["requests_by_region"] == {"us": 1, "eu": 1}
    assert (stats["payloads"], stats["visitors"], stats["events"]) == (2, 7, 7)
    assert (stats["unique_events"], stats["duplicates"]) == (7, 0)
    assert stats["impressions"] == {"e1": {"v1": 1, "v2": 1}, "e2": {"null": 1}}
    assert stats["conversions"] == {"purchase": 3, "signup": 1}
    assert stats["revenue"] == {"purchase": 750}
    events = handle.events()
    assert [e["uuid"] for e in events] == ["i1", "i2", "i3", "c1", "c2", "c3", "c9"]
    assert events[-1]["region"] == "eu"
    assert events[0]["visitor"] == body["visitors"][0]
    assert events[0]["decisions"] == body["visitors"][0]["snapshots"][0]["decisions"]
    assert events[3]["tags"] == {"revenue": 500}
    assert (events[0]["anonymize_ip"], events[0]["client_name"]) == (True, "python-sdk")


def test_deduplicates_on_entity_uuid_timestamp(handle: CollectorHandle, http: httpx.Client) -> None:
    same = impression("u1", "dup")
    # twice in one request, then again in another request (different visitor: same key)
    assert http.post("/v1/events", json=payload(same, same)).status_code == 204
    assert http.post("/eu/v1/events", json=payload(impression("u2", "dup"))).status_code == 204
    other_time = copy.deepcopy(same)
    other_time["snapshots"][0]["events"][0]["timestamp"] += 1
    other_entity = copy.deepcopy(same)
    other_entity["snapshots"][0]["events"][0]["entity_id"] = "other"
    assert http.post("/v1/events", json=payload(other_time, other_entity)).status_code == 204
    stats = handle.stats()
    assert (stats["events"], stats["unique_events"], stats["duplicates"]) == (5, 3, 2)
    assert stats["impressions"] == {"e1": {"v1": 3}}
    assert len(handle.events()) == 3


BAD_REQUESTS: list[tuple[str, bytes, dict[str, str], int, str | None]] = [
    ("not json", b"{nope", {}, 400, "$"),
    ("empty", b"", {}, 400, "$"),
    ("array", b"[]", {}, 400, "$"),
    (
        "bad type",
        json.dumps(payload(conversion("u", "x") | {"visitor_id": 7})).encode(),
        {},
        400,
        "$.visitors[0].visitor_id",
    ),
    (
        "missing uuid",
        json.dumps(
            payload({"visitor_id": "u", "snapshots": [{"events": [{"entity_id": "e"}]}]})
        ).encode(),
        {},
        400,
        "$.visitors[0].snapshots[0].events[0]",
    ),
    ("bad gzip", b"definitely not gzip", {"Content-Encoding": "gzip"}, 400, "$"),
    ("truncated gzip", gzip.compress(_GOOD_JSON)[:-12], {"Content-Encoding": "gzip"}, 400, "$"),
    ("gzip bomb", gzip.compress(b" " * (MAX_BODY * 20)), {"Content-Encoding": "gzip"}, 413, None),
    ("too large", b" " * (MAX_BODY + 1), {}, 413, None),
    ("unsupported encoding", b"{}", {"Content-Encoding": "br"}, 415, None),
    ("gzip of garbage", gzip.compress(b"\x00\x01garbage"), {"Content-Encoding": "gzip"}, 400, "$"),
]


@pytest.mark.parametrize(
    ("name", "body", "headers", "status", "path"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
def test_rejects_bad_requests_with_a_json_error(
    handle: CollectorHandle,
    http: httpx.Client,
    name: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    path: str | None,
) -> None:
    response = http.post("/v1/events", content=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["error"]
    assert error.get("path") == path
    assert handle.stats()["requests_by_status"] == {str(status): 1}
    assert handle.events() == []


def test_bad_requests_never_break_later_good_ones(handle: CollectorHandle) -> None:
    # One keep-alive connection for everything: a bad request must not poison it.
    with httpx.Client(base_url=handle.base_url, trust_env=False, timeout=10) as http:
        for i, (name, body, headers, status, _) in enumerate(BAD_REQUESTS):
            assert http.post("/v1/events", content=body, headers=headers).status_code == status
            good = payload(impression(f"u{i}", f"good-{i}"))
            response = http.post("/v1/events", json=good)
            assert response.status_code == 204, (name, response.text)
    stats = handle.stats()
    assert stats["unique_events"] == len(BAD_REQUESTS)
    assert stats["invalid_payloads"] == sum(1 for b in BAD_REQUESTS if b[3] in (400, 415))
    assert stats["too_large"] == sum(1 for b in BAD_REQUESTS if b[3] == 413)
    assert [e["uuid"] for e in handle.events()] == [f"good-{i}" for i in range(len(BAD_REQUESTS))]


def test_garbage_on_the_wire_does_not_disturb_other_clients(
    handle: CollectorHandle, http: httpx.Client
) -> None:
    host, port = handle.base_url.removeprefix("http://").split(":")
    for garbage in (b"\x00\xff nonsense\r\n\r\n", b"POST /v1/events HTTP/1.1\r\nBad\r\n\r\n"):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(garbage)
            assert sock.recv(65536).startswith(b"HTTP/1.1 400")
    # a client that goes away in the middle of its body
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
    assert http.post("/v1/events", json=GOOD).status_code == 204
    assert handle.stats()["unique_events"] == 1


def test_gzip_bodies_are_accepted(handle: CollectorHandle, http: httpx.Client) -> None:
    body = json.dumps(payload(conversion("u1", "gz-1"))).encode()
    headers = {"Content-Encoding": "gzip"}
    assert http.post("/v1/events", content=gzip.compress(body), headers=headers).status_code == 204
    # several gzip members are one valid gzip stream (RFC 1952)
    raw = json.dumps(payload(conversion("u1", "gz-2"))).encode()
    members = gzip.compress(raw[:20]) + gzip.compress(raw[20:])
    assert http.post("/eu/v1/events", content=members, headers=headers).status_code == 204
    assert [e["uuid"] for e in handle.events()] == ["gz-1", "gz-2"]


def test_chunked_body_over_the_limit_is_cut_off_while_streaming(
    handle: CollectorHandle, http: httpx.Client
) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(40):
            sent += 10_000
            yield b" " * 10_000

    # no Content-Length: the limit can only be enforced while reading
    response = http.post("/v1/events", content=chunks())
    assert response.status_code == 413
    assert http.post("/v1/events", json=GOOD).status_code == 204
    assert handle.stats()["too_large"] == 1


def test_content_length_over_the_limit_is_refused_before_reading(handle: CollectorHandle) -> None:
    # A raw socket: announce a huge body, send none, and still get the 413 at once.
    host, port = handle.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {MAX_BODY + 1}\r\n\r\n".encode()
        )
        answer = b""
        while not answer.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"exceeds the limit" in answer


def test_gzip_inflater_never_holds_more_than_the_limit() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)
    inflater = GzipInflater(limit=1_000_000)
    with pytest.raises(BodyRejected) as info:
        for i in range(0, len(bomb), 4096):
            inflater.feed(bomb[i : i + 4096])
    assert info.value.status == 413
    assert inflater.size <= 1_000_001
    assert sum(len(c) for c in inflater.chunks) <= 1_000_000
    assert len(zlib.compress(b"")) > 0  # zlib is the real one


def test_drop_closes_the_connection_without_any_response(
    handle: CollectorHandle, http: httpx.Client
) -> None:
    assert handle.control(drop_rate=1.0)["drop_rate"] == 1.0
    large = json.dumps(payload(*(impression(f"u{i}", f"big-{i}") for i in range(500)))).encode()
    assert 100_000 < len(large) < MAX_BODY
    bodies = [_GOOD_JSON, _GOOD_JSON, large, gzip.compress(large)]
    for body in bodies:
        headers = {"Content-Encoding": "gzip"} if body[:2] == b"\x1f\x8b" else {}
        with pytest.raises(httpx.RemoteProtocolError):
            http.post("/v1/events", content=body, headers=headers)
    handle.control(drop_rate=0.0)
    assert http.post("/v1/events", json=GOOD).status_code == 204
    stats = handle.stats()
    assert stats["dropped_connections"] == len(bodies)
    assert stats["faults"] == {"drop": len(bodies)}
    assert stats["requests_by_status"] == {"204": 1}
    assert stats["unique_events"] == 1


def test_failures_and_429_store_nothing(handle: CollectorHandle, http: httpx.Client) -> None:
    handle.control(fail_rate=1.0, seed=3)
    statuses = [http.post("/v1/events", json=GOOD).status_code for _ in range(20)]
    assert set(statuses) == {500, 503}
    handle.control(fail_rate=0.0, rate_429=1.0, retry_after=7)
    response = http.post("/eu/v1/events", json=GOOD)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    stats = handle.stats()
    assert stats["unique_events"] == 0 and handle.events() == []
    assert stats["requests_by_region"] == {"us": 20, "eu": 1}
    assert stats["faults"]["http_429"] == 1
    assert stats["faults"]["http_500"] + stats["faults"]["http_503"] == 20
    assert stats["requests_by_status"]["429"] == 1


def test_a_seed_makes_the_fault_sequence_reproducible(
    handle: CollectorHandle, http: httpx.Client
) -> None:
    def run() -> list[int | str]:
        handle.control(fail_rate=0.3, rate_429=0.2, drop_rate=0.2, seed=42)
        outcomes: list[int | str] = []
        for _ in range(40):
            try:
                outcomes.append(http.post("/v1/events", json=GOOD).status_code)
            except httpx.TransportError:
                outcomes.append("drop")
        return outcomes

    first, second = run(), run()
    assert first == second
    assert set(first) == {204, 500, 503, 429, "drop"}


def test_latency_delays_event_requests_only(handle: CollectorHandle, http: httpx.Client) -> None:
    handle.control(latency_ms=150)
    start = time.perf_counter()
    assert http.post("/v1/events", json=GOOD).status_code == 204
    assert time.perf_counter() - start >= 0.15
    start = time.perf_counter()
    handle.stats()
    assert time.perf_counter() - start < 0.15


def test_control_validates_and_reports(handle: CollectorHandle, http: httpx.Client) -> None:
    assert http.get("/control").json() == DEFAULT_CONTROL
    updated = http.post("/control", json={"fail_rate": 0.25, "seed": 9}).json()
    assert updated == DEFAULT_CONTROL | {"fail_rate": 0.25, "seed": 9}
    for bad, needle in [
        ({"fail_rate": 1.5}, "fail_rate must be between 0 and 1"),
        ({"drop_rate": "0.1"}, "Expected `float`, got `str`"),
        ({"fail_rate": 0.5, "rate_429": 0.6}, "at most 1"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"retry_after": -1.5}, "retry_after"),
        ({"fail-rate": 0.1}, "unknown field `fail-rate`"),
        ([], "Expected `object`"),
    ]:
        response = http.post("/control", json=bad)
        assert response.status_code == 400, bad
        assert needle in response.json()["error"], (bad, response.text)
    assert http.post("/control", content=b"{").status_code == 400
    assert http.get("/control").json() == updated  # unchanged by rejected updates


def test_reset_clears_events_and_stats(handle: CollectorHandle, http: httpx.Client) -> None:
    http.post("/v1/events", json=GOOD)
    handle.reset()
    stats = handle.stats()
    assert stats["requests"] == 0 and stats["unique_events"] == 0
    assert stats["requests_by_region"] == {"us": 0, "eu": 0}
    assert handle.events() == []
    # the same event is new again after a reset
    assert http.post("/v1/events", json=GOOD).status_code == 204
    assert handle.stats()["unique_events"] == 1


def test_events_pagination(handle: CollectorHandle, http: httpx.Client) -> None:
    visitors = [conversion(f"u{i}", f"p{i}") for i in range(25)]
    assert http.post("/v1/events", json=payload(*visitors)).status_code == 204
    assert [e["uuid"] for e in handle.events(limit=10, offset=20)] == [
        f"p{i}" for i in range(20, 25)
    ]
    assert len(handle.events()) == 25
    assert http.get("/events", params={"limit": "x"}).status_code == 400
    assert http.get("/events", params={"offset": -1}).status_code == 400


def test_other_methods_and_paths(http: httpx.Client) -> None:
    assert http.get("/v1/events").status_code == 405
    assert http.post("/v2/events", json=GOOD).status_code == 404
    assert http.get("/healthz").json() == {"status": "ok"}


def test_concurrent_clients(handle: CollectorHandle) -> None:
    def send(worker: int) -> None:
        with httpx.Client(base_url=handle.base_url, trust_env=False, timeout=10) as http:
            for i in range(20):
                visitors = [conversion(f"w{worker}", f"{worker}-{i}-{j}") for j in range(5)]
                assert http.post("/v1/events", json=payload(*visitors)).status_code == 204

    threads = [threading.Thread(target=send, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = handle.wait_for(unique_events=400, timeout=5)
    assert stats["requests"] == 80 and stats["duplicates"] == 0


DOCS = Path(__file__).parent.parent / "docs" / "collector.md"


def test_docs_cover_every_stats_and_control_key_and_option(handle: CollectorHandle) -> None:
    text = DOCS.read_text()
    for key in (*handle.stats(), *handle.control()):
        assert f"| `{key}` |" in text, key
    for param in collector_command.params:
        for option in param.opts:
            assert f"| `{option}" in text, option
