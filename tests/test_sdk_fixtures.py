"""Every payload an official SDK sends (tests/fixtures/sdk/) is forwarded byte for byte.

Through the relay (POSTed as the fixture file spells it, whitespace included) and
through BatchDispatcher (dispatch_event with the payload as params): the upstream
receives each visitor's JSON text unchanged, `null`s and unknown fields included.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from xpevents import BatchDispatcher
from xpevents.collector import Collector, CollectorServer
from xpevents.events.model import LogEvent
from xpevents.relay.app import Relay, RelaySettings
from xpevents.relay.server import RelayServer
from xpevents.spool.memory import MemorySpool

from servers import ScriptedServer, scripted_server

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "sdk").glob("*.json"))
EU_HOST = "eu.logx.optimizely.com"

_FILE = msgspec.json.Decoder(dict[str, msgspec.Raw])
_VISITORS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])


def fixture_payload(path: Path) -> tuple[str, bytes]:
    """``(url, payload bytes as written in the file)``."""
    fields = _FILE.decode(path.read_bytes())
    return msgspec.json.decode(bytes(fields["url"])), bytes(fields["payload"])


def raw_visitors(body: bytes) -> list[bytes]:
    return [bytes(v) for v in _RAW_LIST.decode(_VISITORS.decode(body)["visitors"])]


def received_visitors(server: ScriptedServer) -> list[bytes]:
    return [v for request in server.received for v in raw_visitors(request.body)]


def wait_for(server: ScriptedServer, count: int, timeout: float = 10.0) -> list[bytes]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = received_visitors(server)
        if len(got) >= count:
            return got
        time.sleep(0.02)
    return received_visitors(server)


def test_there_are_fixtures() -> None:
    assert len(FIXTURES) >= 50


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        yield server


@pytest.fixture(scope="module")
def relay_url(upstream: ScriptedServer) -> Iterator[str]:
    settings = RelaySettings(
        upstream=upstream.url,
        upstream_eu=upstream.base_url + "/eu/v1/events",
        flush_interval=0.02,
        batch_size=1,
    )
    relay = Relay(MemorySpool(10_000, "drop_newest"), settings)
    with RelayServer(relay, port=0) as server:
        yield server.url


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_every_sdk_fixture_through_the_relay_byte_for_byte(
    path: Path, upstream: ScriptedServer, relay_url: str
) -> None:
    url, body = fixture_payload(path)
    upstream.received.clear()
    route = "/eu/v1/events/" if EU_HOST in url else "/v1/events/"  # trailing slash: no 307
    response = httpx.post(relay_url + route, content=body, timeout=10)
    assert response.status_code == 204, response.text
    sent = raw_visitors(body)
    got = wait_for(upstream, len(sent))
    assert got == sent
    assert {r.path for r in upstream.received} == {route.rstrip("/")}


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_every_sdk_fixture_through_batch_dispatcher(path: Path, upstream: ScriptedServer) -> None:
    url, body = fixture_payload(path)
    params: dict[str, Any] = msgspec.json.decode(body)
    upstream.received.clear()
    with BatchDispatcher(endpoint=upstream.base_url, flush_interval=0.02) as dispatcher:
        dispatcher.dispatch_event(LogEvent(url=url, params=params))
        assert dispatcher.flush(timeout=10)
    got = received_visitors(upstream)
    assert got == [msgspec.json.encode(v) for v in params["visitors"]]
    assert msgspec.json.decode(b"[" + b",".join(got) + b"]") == params["visitors"]
    expected = "/eu/v1/events" if EU_HOST in url else "/v1/events"
    assert {r.path for r in upstream.received} == {expected}


# -- into the collector: lenient by default, strict on request ------------------------


def _collector(strict: str) -> tuple[Collector, CollectorServer]:
    collector = Collector(strict=strict)
    return collector, CollectorServer(collector, port=0).start()


@pytest.fixture(scope="module")
def lenient() -> Iterator[str]:
    collector, server = _collector("off")
    yield server.url
    server.stop()
    collector.close()


def test_every_sdk_fixture_through_the_relay_into_the_collector_byte_identical(
    lenient: str,
) -> None:
    settings = RelaySettings(
        upstream=lenient + "/v1/events", upstream_eu=lenient + "/eu/v1/events", flush_interval=0.02
    )
    relay = Relay(MemorySpool(10_000, "drop_newest"), settings)
    sent: dict[str, bytes] = {}
    with RelayServer(relay, port=0) as server, httpx.Client(base_url=server.url) as http:
        for path in FIXTURES:
            url, body = fixture_payload(path)
            route = "/eu/v1/events" if EU_HOST in url else "/v1/events"
            assert http.post(route, content=body).status_code == 204, path.name
            for visitor in raw_visitors(body):
                for uuid in _uuids(visitor):
                    sent[uuid] = visitor
        stored: dict[str, bytes] = {}
        deadline = time.monotonic() + 20
        while len(stored) < len(sent) and time.monotonic() < deadline:
            rows = httpx.get(lenient + "/events?raw=1&limit=100000").json()
            stored = {row["uuid"]: row["visitor"].encode() for row in rows}
            time.sleep(0.05)
    assert stored == sent


def _uuids(visitor: bytes) -> list[str]:
    data = msgspec.json.decode(visitor)
    return [e["uuid"] for s in data["snapshots"] for e in s["events"]]


def test_strict_warn_reports_sdk_bugs_and_refuse_refuses_them() -> None:
    outcomes: dict[str, dict[str, int]] = {}
    for mode in ("warn", "refuse"):
        collector, server = _collector(mode)
        try:
            statuses: dict[str, int] = {}
            for path in FIXTURES:
                url, body = fixture_payload(path)
                route = "/eu/v1/events" if EU_HOST in url else "/v1/events"
                statuses[path.stem] = httpx.post(server.url + route, content=body).status_code
            outcomes[mode] = statuses
            stats = httpx.get(server.url + "/stats").json()
        finally:
            server.stop()
            collector.close()
        if mode == "warn":
            assert set(statuses.values()) == {204}
            warned = sum(stats["schema_warnings"].values())
            assert warned >= 8
            assert stats["schema_warnings"]["$.visitors[].snapshots[].events[].entity_id"] >= 1
            assert all(w["path"].startswith("$") for w in stats["recent_schema_warnings"])
    refused = {name for name, status in outcomes["refuse"].items() if status == 400}
    assert len(refused) == warned
    assert "php-decide-no-variation" in refused
