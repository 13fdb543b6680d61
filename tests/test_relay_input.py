"""xpevents relay against bad input: payloads, sizes, gzip, tokens, slow clients, floods."""

from __future__ import annotations

import gzip
import re
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from test_relay import FAST, payload_body, stored_uuids, wait_for_uuids
from xpevents.errors import SpoolError
from xpevents.relay.app import Relay, RelaySettings
from xpevents.relay.cli import relay_command
from xpevents.relay.ingest import split_payload
from xpevents.relay.server import RelayServer
from xpevents.relay.testing import RelayHandle, run_relay
from xpevents.spool.base import SpoolRecord, SpoolStats
from xpevents.spool.envelope import batch_envelope
from xpevents.spool.memory import MemorySpool
from xpevents.spool.sqlite import SqliteSpool
from xpevents.testing import CollectorHandle, run_collector

from servers import scripted_server

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def sink() -> Iterator[CollectorHandle]:
    with run_collector() as handle:
        yield handle


@pytest.fixture(scope="module")
def relay(sink: CollectorHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayHandle]:
    spool = tmp_path_factory.mktemp("relay") / "r.db"
    with run_relay(
        spool=f"sqlite:///{spool}",
        upstream=sink.events_url,
        upstream_eu=sink.eu_events_url,
        env={"XPEVENTS_RELAY_TOKEN": TOKEN},
        read_timeout=1,
        max_body=100_000,
        **FAST,
    ) as handle:
        yield handle


def post(relay: RelayHandle, body: bytes, **headers: str) -> httpx.Response:
    return relay.http.post("/v1/events", content=body, headers={**AUTH, **headers})


# -- tokens -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
)
def test_missing_or_wrong_token_is_401(relay: RelayHandle, headers: dict[str, str]) -> None:
    response = relay.http.post("/v1/events", content=payload_body(["t1"]), headers=headers)
    assert response.status_code == 401
    assert "Bearer" in response.headers["www-authenticate"]


def test_right_token_is_204_and_delivered(relay: RelayHandle, sink: CollectorHandle) -> None:
    assert post(relay, payload_body(["tok-ok"])).status_code == 204
    assert not wait_for_uuids(sink, {"tok-ok"}, timeout=10)


# -- payloads -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "path", "reason"),
    [
        (b"{not json", "$", "not_json"),
        (b"", "$", "not_json"),
        (b"[]", "$", "not_object"),
        (b'"visitors"', "$", "not_object"),
        (b'{"account_id": "1"}', "$.visitors", "no_visitors"),
        (b'{"account_id": "1", "visitors": {}}', "$.visitors", "no_visitors"),
        (b'{"account_id": "1", "visitors": null}', "$.visitors", "no_visitors"),
        (b'{"account_id": "1", "visitors": [{}, 3]}', "$.visitors[1]", "visitor_not_object"),
        (
            b'{"visitors": [{"visitor_id": "a"}, {"x\xff": 1}]}',
            "$.visitors[1]",
            "invalid_string",
        ),
        (b'{"visitors": [{"visitor_id": "\\ud800"}]}', "$.visitors[0]", "invalid_string"),
        (b'{"visitors": [{"visitor_id": "\\udc00a"}]}', "$.visitors[0]", "invalid_string"),
        (b'{"account_id": "\xc3\x28", "visitors": []}', "$.account_id", "invalid_string"),
        (b'{"visitors": [' + b'{"a":' * 1200 + b"1" + b"}" * 1200 + b"]}", "$", "too_deep"),
        (b'{"visitors": [' + b"[" * 1200 + b"]" * 1200 + b"]}", "$", "too_deep"),
        (b'{"x": "' + b"a" * 70_000 + b'", "visitors": []}', "$", "envelope_too_large"),
    ],
)
def test_what_cannot_be_forwarded_is_400_with_path_and_reason_counted(
    relay: RelayHandle, body: bytes, path: str, reason: str
) -> None:
    key = f'xpevents_relay_rejected_requests_total{{reason="{reason}"}}'
    before = relay.metrics().get(key, 0.0)
    response = post(relay, body)
    assert response.status_code == 400
    answer = response.json()
    assert (answer["path"], answer["reason"]) == (path, reason), answer
    assert path in answer["error"]
    assert relay.metrics()[key] == before + 1


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b.replace(b'"account_id":"12345",', b""),  # no account_id
        lambda b: b.replace(b'"12345"', b"12"),  # a number for a string
        lambda b: b.replace(b"1700000000000", b'"1700000000000"'),
        lambda b: b.replace(b'"anonymize_ip":true', b'"anonymize_ip":"yes"'),
        lambda b: b.replace(b'"entity_id":"', b'"entity_id":null,"was":"'),  # PHP 4.x
        lambda b: b.replace(b'"uuid":"', b'"unknown_field":{"a":[null]},"uuid":"'),
        lambda b: b.replace(b'"visitor_id":"', b'"visitor_id":"\\ud83d\\ude00 \\u00e9'),
    ],
)
def test_a_forwarder_not_a_judge_forwards_the_rest_byte_for_byte(
    edit: Callable[[bytes], bytes], tmp_path: Path
) -> None:
    body = edit(payload_body(["judge-" + str(abs(hash(edit)))]))
    assert body != payload_body(["x"])
    with scripted_server() as upstream:
        relay = Relay(
            MemorySpool(100, "drop_newest"),
            RelaySettings(upstream=upstream.url, flush_interval=0.02),
        )
        with RelayServer(relay, port=0) as server:
            response = httpx.post(server.url + "/v1/events", content=body)
            assert response.status_code == 204, response.text
            deadline = time.monotonic() + 10
            while not upstream.received and time.monotonic() < deadline:
                time.sleep(0.02)
    visitor = split_payload(body, upstream.url)[1][0]
    assert visitor in upstream.received[0].body


def test_an_empty_visitors_list_is_accepted_and_nothing_is_spooled(relay: RelayHandle) -> None:
    assert post(relay, b'{"account_id": "1", "visitors": []}').status_code == 204


def test_oversize_bodies_are_413(relay: RelayHandle) -> None:
    big = payload_body([f"u{i:06d}" for i in range(1500)])  # > max_body=100,000
    assert len(big) > 100_000
    assert post(relay, big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    response = relay.http.post("/v1/events", content=chunks(), headers=AUTH)
    assert response.status_code == 413


def test_gzip_bodies_and_gzip_bombs(relay: RelayHandle, sink: CollectorHandle) -> None:
    assert (
        post(
            relay, gzip.compress(payload_body(["gz1"])), **{"Content-Encoding": "gzip"}
        ).status_code
        == 204
    )
    bomb = gzip.compress(b" " * 50_000_000, 9)  # ~50 KB that inflates to 50 MB
    assert len(bomb) < 100_000
    response = post(relay, bomb, **{"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert post(relay, b"\x1f\x8b garbage", **{"Content-Encoding": "gzip"}).status_code == 400
    assert (
        post(
            relay, gzip.compress(payload_body(["gz2"]))[:-4], **{"Content-Encoding": "gzip"}
        ).status_code
        == 400
    )
    assert post(relay, payload_body(["br"]), **{"Content-Encoding": "br"}).status_code == 415
    assert not wait_for_uuids(sink, {"gz1"}, timeout=10)
    assert "gz2" not in stored_uuids(sink)


def test_bad_input_never_breaks_good_events(relay: RelayHandle, sink: CollectorHandle) -> None:
    good = [f"mix-{i}" for i in range(30)]
    for i, uuid in enumerate(good):
        post(relay, b"{bad" * i)
        assert post(relay, payload_body([uuid])).status_code == 204
    assert not wait_for_uuids(sink, set(good), timeout=10)
    metrics = relay.metrics()
    assert metrics['xpevents_relay_rejected_requests_total{reason="not_json"}'] >= 29


# -- slow clients -----------------------------------------------------------------------


def test_slowloris_does_not_stall_other_clients(relay: RelayHandle) -> None:
    host, port = relay.base_url.removeprefix("http://").split(":")
    request = (
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50\r\n"
    )
    stop = threading.Event()
    slow: list[socket.socket] = []

    def drip() -> None:
        sock = socket.create_connection((host, int(port)))
        slow.append(sock)
        for byte in request:
            if stop.is_set():
                return
            sock.sendall(bytes([byte]))
            time.sleep(0.05)

    drippers = [threading.Thread(target=drip) for _ in range(20)]
    for thread in drippers:
        thread.start()
    try:
        time.sleep(0.3)
        worst = 0.0
        for i in range(30):
            started = time.perf_counter()
            assert post(relay, payload_body([f"fast-{i}"])).status_code == 204
            worst = max(worst, time.perf_counter() - started)
        assert worst < 0.5
    finally:
        stop.set()
        for thread in drippers:
            thread.join(10)
        for sock in slow:
            sock.close()


def test_a_body_that_never_comes_is_408(relay: RelayHandle) -> None:
    host, port = relay.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + TOKEN.encode()
            + b"\r\nContent-Length: 1000\r\n\r\n{"
        )
        started = time.monotonic()
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - started < 4


# -- verbatim visitors and envelopes ----------------------------------------------------


def test_visitors_reach_the_upstream_byte_for_byte(tmp_path: Path) -> None:
    body = payload_body(["vb1", "vb2"], spaced=True).replace(b'"v-vb1"', b'"caf\\u00e9 \\"q\\""')
    with (
        scripted_server() as upstream,
        run_relay(
            spool=f"sqlite:///{tmp_path}/r.db",
            upstream=upstream.url,
            upstream_eu=upstream.url,
            **FAST,
        ) as relay,
    ):
        assert relay.http.post("/v1/events", content=body).status_code == 204
        deadline = time.monotonic() + 10
        while not upstream.received and time.monotonic() < deadline:
            time.sleep(0.02)
    sent = upstream.received[0].body
    raw_visitors = msgspec.json.decode(body, type=dict[str, Any])["visitors"]
    assert len(raw_visitors) == 2
    start = body.index(b'{"visitor_id"')
    end = body.rindex(b"]}")
    assert body[start:end] in sent  # the visitors' text, spaces and escapes included
    assert msgspec.json.decode(sent) == msgspec.json.decode(body)


def test_envelope_is_the_one_batch_dispatcher_builds() -> None:
    params = msgspec.json.decode(payload_body(["e1"]))
    compact = msgspec.json.encode(params)
    envelope, visitors = split_payload(compact, "https://up.example/v1/events")
    assert envelope == batch_envelope("https://up.example/v1/events", params)
    assert visitors == [msgspec.json.encode(v) for v in params["visitors"]]


def test_a_url_inside_the_payload_is_never_followed() -> None:
    body = payload_body(["u"]).replace(b'"account_id"', b'"url":"http://evil/","account_id"')
    envelope, _ = split_payload(body, "https://up.example/v1/events")
    assert envelope.startswith(b"Bhttps://up.example/v1/events\n")


# -- a full spool and a failing spool -----------------------------------------------------


def test_flood_with_a_full_spool_gets_503_and_loses_nothing_accepted(
    collector_factory: Callable[..., CollectorHandle], tmp_path: Path
) -> None:
    down = collector_factory(fail_rate=1.0)
    with run_relay(
        spool=f"sqlite:///{tmp_path}/r.db",
        upstream=down.events_url,
        upstream_eu=down.eu_events_url,
        max_spool_events=50,
        retry_after=2,
        **FAST,
    ) as relay:

        def send(i: int) -> tuple[str, httpx.Response]:
            uuid = f"flood-{i}"
            return uuid, httpx.post(
                relay.events_url, content=payload_body([uuid]), trust_env=False, timeout=30
            )

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(send, range(300)))
        accepted = {uuid for uuid, r in results if r.status_code == 204}
        refused = [r for _, r in results if r.status_code == 503]
        assert len(accepted) == 50
        assert len(refused) == 250
        assert all(r.headers["retry-after"] == "2" for r in refused)
        ready = relay.readyz()
        assert ready.status_code == 503
        assert "spool full" in ready.json()["problems"]
        down.control(fail_rate=0.0)
        missing = wait_for_uuids(down, accepted, timeout=30)
        assert not missing
        assert stored_uuids(down) == accepted
        metrics = relay.metrics()
        assert metrics['xpevents_relay_refused_visitors_total{reason="spool_full"}'] == 250


class FailingSpool:
    """A SQLite spool whose appends fail while ``failing`` is set."""

    durable = True

    def __init__(self, path: Path) -> None:
        self.inner = SqliteSpool(path)
        self.url = self.inner.url
        self.failing = False

    def append(self, entries: Sequence[tuple[bytes, bytes]], *, now: float) -> None:
        if self.failing:
            raise SpoolError("disk full (simulated)")
        self.inner.append(entries, now=now)

    def claim(
        self, *, max_records: int, max_bytes: int, lease: float, now: float
    ) -> list[SpoolRecord]:
        return self.inner.claim(max_records=max_records, max_bytes=max_bytes, lease=lease, now=now)

    def ack(self, ids: Sequence[int | str]) -> None:
        self.inner.ack(ids)

    def retry(self, ids: Sequence[int | str], **kwargs: Any) -> None:
        self.inner.retry(ids, **kwargs)

    def dead_letter(self, ids: Sequence[int | str], **kwargs: Any) -> None:
        self.inner.dead_letter(ids, **kwargs)

    def next_due_at(self, *, now: float) -> float | None:
        return self.inner.next_due_at(now=now)

    def stats(self, *, now: float) -> SpoolStats:
        return self.inner.stats(now=now)

    def dead_letters(self, *, limit: int = 100) -> list[Any]:
        return self.inner.dead_letters(limit=limit)

    def replay_dead_letters(self, *, reason: str | None = None, now: float) -> int:
        return self.inner.replay_dead_letters(reason=reason, now=now)

    def purge_dead_letters(self, *, reason: str | None = None) -> int:
        return self.inner.purge_dead_letters(reason=reason)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_failing_spool_gets_503_never_204(tmp_path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's TestClient: "install httpx2"
        from starlette.testclient import TestClient

    with scripted_server() as upstream:
        store = FailingSpool(tmp_path / "r.db")
        relay = Relay(
            store,  # type: ignore[arg-type]
            RelaySettings(upstream=upstream.url, upstream_eu=upstream.url, flush_interval=0.05),
        )
        try:
            with TestClient(relay.app) as client:
                assert client.post("/v1/events", content=payload_body(["ok1"])).status_code == 204
                assert client.get("/readyz").status_code == 200
                store.failing = True
                response = client.post("/v1/events", content=payload_body(["no"]))
                assert response.status_code == 503
                assert response.headers["retry-after"] == "1"
                assert response.json()["reason"] == "spool_error"
                ready = client.get("/readyz")
                assert ready.status_code == 503
                assert "disk full" in ready.json()["problems"][0]
                store.failing = False
                assert client.post("/v1/events", content=payload_body(["ok2"])).status_code == 204
                assert client.get("/readyz").status_code == 200
                assert client.get("/healthz").json() == {"status": "ok"}
        finally:
            outcome = relay.close(timeout=5)
        assert outcome.pending == 0
        sent = b"".join(r.body for r in upstream.received)
        assert b'"ok1"' in sent and b'"ok2"' in sent and b'"no"' not in sent


# -- configuration ---------------------------------------------------------------------------


def resolved(
    args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ctx = relay_command.make_context("relay", args)
    return dict(ctx.params)


def test_config_precedence_cli_env_file_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(
        '[relay]\nport = 9001\nbatch-size = 7\nupstream = "http://file.example/v1/events"\n'
        "flush_interval = 0.3\n"
    )
    params = resolved(
        ["--config", str(config), "--port", "9003"],
        {"XPEVENTS_RELAY_PORT": "9002", "XPEVENTS_RELAY_BATCH_SIZE": "8"},
        monkeypatch,
    )
    assert params["port"] == 9003  # CLI beats env and file
    assert params["batch_size"] == 8  # env beats file
    assert params["flush_interval"] == 0.3  # file beats default
    assert params["upstream"] == "http://file.example/v1/events"
    assert params["spool"] == "sqlite:///xpevents-relay.db"  # default
    assert params["upstream_eu"] == "https://eu.logx.optimizely.com/v1/events"


def test_config_file_from_env_and_unknown_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "relay.toml"
    config.write_text("gzip = true\n")
    assert resolved([], {"XPEVENTS_RELAY_CONFIG": str(config)}, monkeypatch)["gzip"] is True
    config.write_text("colour = 'blue'\n")
    with pytest.raises(Exception, match="unknown key 'colour'"):
        resolved(["--config", str(config)], {}, monkeypatch)
    config.write_text("upstrem = 'http://127.0.0.1:1/v1/events'\n")  # review F36
    with pytest.raises(
        Exception, match=re.escape("unknown key 'upstrem'; did you mean 'upstream'?")
    ):
        resolved(["--config", str(config)], {}, monkeypatch)
    with pytest.raises(Exception, match="upstream"):
        resolved(["--upstream", "ftp://x"], {}, monkeypatch)


def test_memory_spool_warns_loudly(
    collector_factory: Callable[..., CollectorHandle],
) -> None:
    sink = collector_factory()
    with run_relay(
        spool="memory://", upstream=sink.events_url, upstream_eu=sink.eu_events_url, **FAST
    ) as relay:
        assert relay.http.post("/v1/events", content=payload_body(["m1"])).status_code == 204
        assert sink.wait_for(unique_events=1)["unique_events"] == 1
        assert "does NOT mean durable" in relay.stderr_text()


def test_the_event_fast_path_answers_as_the_starlette_routes(tmp_path: Path) -> None:
    """POSTs on the event paths skip Starlette (relay/fastpath.py); the answers are the same."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's TestClient: "install httpx2"
        from starlette.testclient import TestClient

    from xpevents.relay.fastpath import EventFastPath

    with scripted_server() as upstream:
        relay = Relay(
            MemorySpool(1000, "drop_newest"),
            RelaySettings(upstream=upstream.url, upstream_eu=upstream.url, token="s3cret"),
        )
        try:
            assert isinstance(relay.app, EventFastPath)
            auth = {"Authorization": "Bearer s3cret"}
            with (
                TestClient(relay.app) as fast,
                TestClient(relay.app.app) as routed,  # the Starlette app alone
            ):
                for client in (fast, routed):
                    for path in ("/v1/events", "/v1/events/", "/eu/v1/events", "/eu/v1/events/"):
                        ok = client.post(path, content=payload_body([path]), headers=auth)
                        assert ok.status_code == 204, ok.text
                        assert ok.content == b""
                    assert client.post("/v1/events", content=b"{}").status_code == 401
                    bad = client.post("/v1/events", content=b'{"visitors": [1]}', headers=auth)
                    assert bad.status_code == 400
                    assert bad.json()["path"] == "$.visitors[0]"
                    assert client.get("/v1/events").status_code == 405
                    assert client.post("/v2/events", content=b"{}").status_code == 404
                answers = [
                    (r.status_code, r.headers.get("content-type"), r.content)
                    for r in (
                        client.post("/v1/events", content=b"[", headers=auth)
                        for client in (fast, routed)
                    )
                ]
                assert answers[0] == answers[1]
            requests = relay.metrics.requests.labels("us", "204")._value.get()
            assert requests == 4  # 2 per client: both ways are counted
        finally:
            relay.close(timeout=0)
