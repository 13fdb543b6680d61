"""The relay's direct path (xpevents.serving.direct): event POSTs answered by the HTTP
protocol itself, byte for byte as the ASGI application answers them, in order."""

from __future__ import annotations

import gzip
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from test_relay import payload_body
from xpevents.relay.app import Relay, RelaySettings
from xpevents.relay.server import RelayServer
from xpevents.relay.testing import run_relay
from xpevents.spool.sqlite import SqliteSpool

from servers import closed_port_url

TOKEN = "direct-token"


class Counted:
    """Which path answered: calls of ``Intake.ingest_whole`` (direct) and ``Intake.ingest``
    (ASGI), wrapped on the relay's instance before the server binds them."""

    def __init__(self, relay: Relay) -> None:
        self.direct = 0
        self.asgi = 0
        intake = relay.intake
        whole, ingest = intake.ingest_whole, intake.ingest

        def counted_whole(*args: Any) -> Any:
            answer = whole(*args)
            if answer is not None:
                self.direct += 1
            return answer

        async def counted_ingest(*args: Any) -> Any:
            self.asgi += 1
            return await ingest(*args)

        intake.ingest_whole = counted_whole  # type: ignore[method-assign]
        intake.ingest = counted_ingest  # type: ignore[method-assign]
        relay.app = relay._application()  # the ASGI path calls the wrapper too


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RelayServer, Counted, SqliteSpool]]:
    store = SqliteSpool(tmp_path / "direct.db")
    relay = Relay(
        store,
        RelaySettings(
            upstream=closed_port_url(),  # nothing is forwarded: the spool keeps all
            upstream_eu=closed_port_url(),
            token=TOKEN,
            max_body=20_000,
            read_timeout=1.0,
            forwarder="thread",
            backoff_base=60,
            shutdown_timeout=0.5,
        ),
    )
    counted = Counted(relay)
    with RelayServer(relay, port=0) as server:
        yield server, counted, store


def request(target: bytes, body: bytes, *extra: bytes, token: str = TOKEN) -> bytes:
    headers = [
        b"POST %s HTTP/1.1" % target,
        b"Host: relay",
        b"Content-Type: application/json",
        b"Content-Length: %d" % len(body),
        *([b"Authorization: Bearer " + token.encode()] if token else []),
        *extra,
    ]
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


def exchange(port: int, data: bytes, answers: int = 1, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a new connection; what came back once ``answers`` responses (or
    the connection's end) arrived."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        deadline = time.monotonic() + timeout
        while received.count(b"HTTP/1.") < answers or not _complete(received):
            if time.monotonic() > deadline:
                raise AssertionError(f"no complete answer in {timeout} s: {received!r}")
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _complete(received: bytes) -> bool:
    head, sep, body = received.rpartition(b"HTTP/1.")[2].partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return True


GOOD = payload_body(["direct-1"])
CASES = {
    "accepted": (request(b"%s", GOOD), 204),
    "eu": (request(b"/eu%s", GOOD), 204),
    "http/1.0": (request(b"%s", GOOD).replace(b"HTTP/1.1", b"HTTP/1.0", 1), 204),
    "connection close": (request(b"%s", GOOD, b"Connection: close"), 204),
    "invalid json": (request(b"%s", b'{"visitors": [tru'), 400),
    "not a payload": (request(b"%s", b'{"visitors": {"a": 1}}'), 400),
    "no token": (request(b"%s", GOOD, token=""), 401),
    "wrong token": (request(b"%s", GOOD, token="nope"), 401),
    "over max_body": (request(b"%s", payload_body([f"u{i:05d}" for i in range(200)])), 413),
    "odd encoding": (request(b"%s", GOOD, b"Content-Encoding: br"), 415),
}


@pytest.mark.parametrize("case", list(CASES))
def test_direct_answers_are_the_asgi_answers_byte_for_byte(
    served: tuple[RelayServer, Counted, SqliteSpool], case: str
) -> None:
    server, counted, _ = served
    template, status = CASES[case]
    direct = exchange(server.port, template.replace(b"%s", b"/v1/events", 1))
    # A query string keeps a request off the direct path (same handler behind it).
    asgi = exchange(server.port, template.replace(b"%s", b"/v1/events?via=asgi", 1))
    assert direct.startswith(b"HTTP/1.1 %d " % status), direct
    assert direct == asgi
    if case == "odd encoding":  # encoded bodies are the application's to read
        assert (counted.direct, counted.asgi) == (0, 2)
    else:
        assert (counted.direct, counted.asgi) == (1, 1)
    if case in ("http/1.0", "connection close"):
        assert b"connection: close\r\n" in direct.lower()


def test_pipelined_requests_are_answered_in_order_across_both_paths(
    served: tuple[RelayServer, Counted, SqliteSpool],
) -> None:
    server, counted, store = served
    bodies = [payload_body([f"pipe-{i}"]) for i in range(3)]
    data = (
        request(b"/v1/events", bodies[0])
        + b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n"
        + request(b"/v1/events", bodies[1])
        + request(b"/v1/events", b"[1]")
        + request(b"/v1/events", bodies[2])
    )
    received = exchange(server.port, data, answers=5)
    statuses = [int(part[:3]) for part in received.split(b"HTTP/1.1 ")[1:]]
    assert statuses == [204, 200, 204, 400, 204]
    assert counted.direct >= 1  # the first; those queued behind go through uvicorn
    assert store.stats(now=time.time()).depth == 3


def test_a_body_still_arriving_is_read_by_the_application(
    served: tuple[RelayServer, Counted, SqliteSpool],
) -> None:
    server, counted, store = served
    data = request(b"/v1/events", payload_body(["slow-1"]))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data[: len(data) - 40])
        time.sleep(0.2)
        sock.sendall(data[len(data) - 40 :])
        assert sock.recv(65536).startswith(b"HTTP/1.1 204 ")
        # ... and a body that stops arriving is the application's 408, as before
        sock.sendall(data[:-40])
        assert sock.recv(65536).startswith(b"HTTP/1.1 408 ")
    assert (counted.direct, counted.asgi) == (0, 2)
    [record] = store.claim(max_records=10, max_bytes=1 << 20, lease=1, now=time.time() + 3600)
    assert record.visitor in data


def test_a_gzip_body_is_read_by_the_application(
    served: tuple[RelayServer, Counted, SqliteSpool],
) -> None:
    server, counted, store = served
    body = gzip.compress(payload_body(["gzip-1"]))
    answer = exchange(server.port, request(b"/v1/events", body, b"Content-Encoding: gzip"))
    assert answer.startswith(b"HTTP/1.1 204 ")
    assert (counted.direct, counted.asgi) == (0, 1)
    assert store.stats(now=time.time()).depth == 1


def test_a_client_gone_before_the_commit_loses_nothing_and_breaks_nothing(
    served: tuple[RelayServer, Counted, SqliteSpool],
) -> None:
    server, _, store = served
    for i in range(20):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(request(b"/v1/events", payload_body([f"gone-{i}"])))
    deadline = time.monotonic() + 10
    while store.stats(now=time.time()).depth < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.stats(now=time.time()).depth == 20
    assert exchange(server.port, request(b"/v1/events", GOOD)).startswith(b"HTTP/1.1 204 ")


def test_the_relay_service_answers_on_the_direct_path_under_keep_alive(tmp_path: Path) -> None:
    """The command-line relay (a subprocess): many requests on one connection, all 204,
    all counted in /metrics as the ASGI path counts them."""
    spool = tmp_path / "service.db"
    with run_relay(
        spool=f"sqlite:///{spool}", upstream=closed_port_url(), shutdown_timeout=1
    ) as relay:
        data = b"".join(
            request(b"/v1/events", payload_body([f"ka-{i}"]), token="") for i in range(50)
        )
        with socket.create_connection(("127.0.0.1", _port(relay.base_url)), timeout=10) as sock:
            for i in range(50):
                sock.sendall(request(b"/v1/events", payload_body([f"ka-{i}"]), token=""))
                assert sock.recv(65536) == b"HTTP/1.1 204 No Content\r\n\r\n"
        assert exchange(_port(relay.base_url), data, answers=50).count(b"HTTP/1.1 204 ") == 50
        metrics = relay.metrics()
        assert metrics['xpevents_relay_requests_total{region="us",status="204"}'] == 100
