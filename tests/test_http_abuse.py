"""Raw-socket abuse of real relay and collector processes (issue 15, items 5 and 6).

Oversized and trickled headers, idle sockets against --max-connections, CL/TE
smuggling, pipelining, slow bodies; the process's RSS (read from /proc) stays bounded.
Every case runs against both services; every wait is bounded.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from test_relay import payload_body
from xpevents.relay.testing import run_relay
from xpevents.testing import run_collector

LIMITS: dict[str, Any] = {
    "max_connections": 6,
    "header_timeout": 1,
    "keep_alive_timeout": 1,
    "max_header_bytes": 8192,
    "read_timeout": 1,
}


class Service:
    def __init__(self, name: str, base_url: str, pid: int) -> None:
        self.base_url = base_url
        self.name = name
        self.host, port = base_url.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)
        self.pid = pid

    def connect(self, timeout: float = 10.0) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def refusals(self, reason: str) -> float:
        """The service's count of connection-level refusals for ``reason``."""
        if self.name == "collector":
            stats = httpx.get(self.base_url + "/stats", timeout=10).json()
            return float(stats["rejected_by_reason"].get(reason, 0))
        text = httpx.get(self.base_url + "/metrics", timeout=10).text
        key = f'xpevents_relay_rejected_requests_total{{reason="{reason}"}} '
        lines = [line for line in text.splitlines() if line.startswith(key)]
        return float(lines[0].split()[-1]) if lines else 0.0

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def exchange(self, data: bytes, timeout: float = 10.0) -> bytes:
        with self.connect(timeout) as sock:
            sock.sendall(data)
            return read_until_closed(sock, timeout)


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response[9:12])


def body_of(response: bytes) -> Any:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])


def request(path: str, body: bytes = b"", method: str = "POST", close: bool = True) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


@contextmanager
def _service(name: str, tmp: Path) -> Iterator[Service]:
    if name == "collector":
        with run_collector(**LIMITS) as handle:
            yield Service(name, handle.base_url, handle.pid)
        return
    with ExitStack() as stack:
        sink = stack.enter_context(run_collector())
        relay = stack.enter_context(
            run_relay(
                spool=f"sqlite:///{tmp / 'abuse.db'}",
                upstream=sink.events_url,
                upstream_eu=sink.eu_events_url,
                flush_interval=0.05,
                **LIMITS,
            )
        )
        yield Service(name, relay.base_url, relay.pid)


@pytest.fixture(scope="module", params=["relay", "collector"])
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with _service(request.param, tmp_path_factory.mktemp(request.param)) as handle:
        yield handle


def test_a_good_request_over_a_raw_socket(service: Service) -> None:
    response = service.exchange(request("/v1/events", payload_body(["abuse-ok"])))
    assert status_of(response) == 204


def test_oversized_headers_are_431_and_memory_stays_bounded(service: Service) -> None:
    counted = service.refusals("header_too_large")
    before = service.rss_kb()
    response = service.exchange(
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    )
    assert status_of(response) == 431
    assert body_of(response)["reason"] == "header_too_large"
    assert service.refusals("header_too_large") == counted + 1
    sockets = [service.connect() for _ in range(4)]
    sent = [0] * len(sockets)
    line = b"X-Pad: " + b"b" * 1000 + b"\r\n"
    for sock in sockets:
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
    for _ in range(2000):  # up to 2 MB per socket: the server must cut it off long before
        for i, sock in enumerate(sockets):
            if sent[i] < 0:
                continue
            try:
                sock.sendall(line)
                sent[i] += len(line)
            except OSError:
                sent[i] = -1
        if all(s < 0 for s in sent):
            break
    for sock in sockets:
        sock.close()
    assert all(s < 0 for s in sent), sent  # every socket was closed by the server
    assert service.rss_kb() - before < 50_000
    assert status_of(service.exchange(request("/healthz", method="GET"))) == 200


def test_trickled_headers_are_timed_out(service: Service) -> None:
    counted = service.refusals("header_timeout")
    started = time.monotonic()
    with service.connect() as sock:
        sock.sendall(b"POST /v1/events HTTP/1.1\r\n")
        answer = b""
        for _ in range(100):  # 1 byte every 0.1 s; the header deadline is 1 s
            try:
                sock.sendall(b"X")
            except OSError:
                break
            time.sleep(0.1)
        answer = read_until_closed(sock, 5)
    assert time.monotonic() - started < 9  # cut off, not allowed the whole 10 s
    assert status_of(answer) == 408
    assert body_of(answer)["reason"] == "header_timeout"
    assert service.refusals("header_timeout") == counted + 1


def test_idle_sockets_never_starve_health_and_are_reaped(service: Service) -> None:
    idle = [service.connect() for _ in range(8)]  # max_connections is 6
    try:
        time.sleep(0.2)
        busy = service.exchange(request("/v1/events", payload_body(["abuse-busy"])))
        assert status_of(busy) == 503
        assert b"retry-after: " in busy.lower()
        assert body_of(busy)["reason"] == "too_many_connections"
        for path in ("/healthz", "/readyz" if service.name == "relay" else "/stats"):
            assert status_of(service.exchange(request(path, method="GET"))) == 200
        for sock in idle:  # the header deadline (1 s) closes every idle socket
            assert read_until_closed(sock, 10) == b""
    finally:
        for sock in idle:
            sock.close()
    response = service.exchange(request("/v1/events", payload_body(["abuse-after"])))
    assert status_of(response) == 204


def test_keep_alive_connections_are_closed_when_idle(service: Service) -> None:
    with service.connect() as sock:
        sock.sendall(request("/healthz", method="GET", close=False))
        started = time.monotonic()
        data = read_until_closed(sock, 10)
    assert status_of(data) == 200
    assert time.monotonic() - started < 8  # keep-alive timeout 1 s


@pytest.mark.parametrize(
    "smuggle",
    [
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\n"
        b"{}{}GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
        b"0\r\n\r\n",
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nGET /smuggled HTTP/1.1\r\n\r\n",
    ],
    ids=["cl-and-te", "two-cl", "te-list", "bad-chunk"],
)
def test_cl_te_smuggling_is_refused_and_nothing_follows(service: Service, smuggle: bytes) -> None:
    response = service.exchange(smuggle)
    assert status_of(response) == 400, response[:300]
    assert response.count(b"HTTP/1.1 ") == 1  # the smuggled request is never answered
    assert body_of(response)["reason"] in ("invalid_http", "not_json", "invalid_payload")


@pytest.mark.parametrize(
    ("head", "says"),
    [
        (
            b"POST /v1/events HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n",
            b"Content-Length",
        ),
        (
            b"POST /v1/events HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n",
            b"Duplicate Content-Length",
        ),
        (b"post /v1/events HTTP/1.1\r\n", b"method"),
        (b"POST /v1/events HTTP/1.1\r\nX-A: a\x00b\r\n", b"header value"),
        (b"POST /v1/\xc3\xa9vents HTTP/1.1\r\n", b"not a valid URL"),
    ],
    ids=["cl-and-te", "two-cl", "lowercase-method", "nul-in-header", "non-ascii-target"],
)
def test_malformed_http_is_400_naming_the_problem(
    service: Service, head: bytes, says: bytes
) -> None:
    counted = service.refusals("invalid_http")
    response = service.exchange(head + b"Host: x\r\nConnection: close\r\n\r\n{}")
    assert status_of(response) == 400, response[:300]
    body = body_of(response)
    assert body["reason"] == "invalid_http"
    assert says.decode() in body["error"], body
    assert service.refusals("invalid_http") == counted + 1


def test_pipelined_requests_are_answered_in_order(service: Service) -> None:
    batch = (
        request("/v1/events", payload_body(["pipe-1"]), close=False)
        + request("/healthz", method="GET", close=False)
        + request("/v1/events", b"{bad", close=False)
        + request("/v1/events", payload_body(["pipe-2"]))
    )
    response = service.exchange(batch)
    statuses = [int(part[:3]) for part in response.split(b"HTTP/1.1 ")[1:]]
    assert statuses == [204, 200, 400, 204]


def test_a_slow_body_is_408(service: Service) -> None:
    body = payload_body(["abuse-slow"])
    with service.connect() as sock:
        sock.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        for byte in body[:40]:  # 1 byte every 0.1 s; the body deadline is 1 s
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.1)
        answer = read_until_closed(sock, 5)
    assert status_of(answer) == 408


def _upgrade_request(path: str, body: bytes, offer: bytes, *, chunked: bool = False) -> bytes:
    framing = (
        b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % len(body)
    )
    if chunked:
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    return (
        b"POST %s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: %s\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n%s\r\n%s"
        % (path.encode(), offer, framing, body)
    )


@pytest.mark.parametrize(
    ("offer", "chunked"),
    [(b"h2c", False), (b"websocket", False), (b"h2c", True)],
    ids=["h2c", "websocket", "h2c-chunked"],
)
def test_an_upgrade_offer_is_ignored_and_the_request_served(
    service: Service, offer: bytes, chunked: bool
) -> None:
    # curl --http2 on http:// offers h2c with every POST: llhttp stops at the headers
    # of such a request, so its body must be parsed again, not refused as bad JSON.
    body = payload_body([f"upgrade-{offer.decode()}-{chunked}"])
    batch = _upgrade_request("/v1/events", body, offer, chunked=chunked)
    batch += request("/healthz", method="GET")
    response = service.exchange(batch)
    statuses = [int(part[:3]) for part in response.split(b"HTTP/1.1 ")[1:]]
    assert statuses == [204, 200], response[:500]


def test_many_upgrade_offers_in_one_read_are_all_served(service: Service) -> None:
    one = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    count = 2000  # parsed in a loop: no recursion per request
    response = service.exchange(one * count + request("/healthz", method="GET"), timeout=30)
    assert response.count(b"HTTP/1.1 200 OK") == count + 1


def test_connect_is_400(service: Service) -> None:
    counted = service.refusals("invalid_http")
    response = service.exchange(
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    )
    assert status_of(response) == 400
    assert "CONNECT" in body_of(response)["error"]
    assert service.refusals("invalid_http") == counted + 1


def test_curl_offering_http2_is_served_over_http11(service: Service, tmp_path: Path) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (.ci/run installs it)")
    body = tmp_path / "body.json"
    body.write_bytes(payload_body(["curl-h2c"]))
    done = subprocess.run(
        [
            curl,
            "--http2",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            f"@{body}",
            "--noproxy",
            "*",
            "--max-time",
            "10",
            service.base_url + "/v1/events",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.stdout == "204 1.1", (done.stdout, done.stderr)
