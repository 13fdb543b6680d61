"""DefaultEventDispatcher without a thread hand-off: DNS bounded by the host cache, POSTs
on its own http.client connections (issue 16).

Host names like ``sink.test`` are resolved by a resolver the test installs (a real,
blocking function: never the system's DNS) to 127.0.0.1, and exempted from the suite's
dead proxy by ``NO_PROXY``; nothing leaves the machine. Time bounds are gross (10x).
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from xpevents.dispatch import resolve as resolve_module
from xpevents.dispatch.batch import BatchDispatcher
from xpevents.dispatch.deadline import deadline, deadline_transport
from xpevents.dispatch.default import DefaultEventDispatcher
from xpevents.dispatch.direct import DirectPool
from xpevents.dispatch.resolve import HostCache
from xpevents.events.model import LogEvent
from xpevents.send.retry import RetryPolicy

from payloads import payload, visitor
from servers import Reply, scripted_server, silent_server

ONCE = RetryPolicy(max_attempts=1)
URL = "https://logx.optimizely.com/v1/events"
NAMES = ("sink.test", "slow-dns.test")


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Resolve NAMES to 127.0.0.1 (slow-dns.test after 30 s); the lookups, in order."""
    looked_up: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        looked_up.append(host)
        if host == "slow-dns.test":
            time.sleep(30)  # a resolver waiting on a dead DNS server
        if host not in NAMES:
            raise socket.gaierror(f"unknown test host {host!r}")
        return ["127.0.0.1"]

    monkeypatch.setattr(resolve_module, "system_resolve", resolve)
    exempt = "127.0.0.1,localhost,::1," + ",".join(NAMES)
    monkeypatch.setenv("NO_PROXY", exempt)
    monkeypatch.setenv("no_proxy", exempt)
    return looked_up


def _url(host: str, port: int, scheme: str = "http") -> str:
    return f"{scheme}://{host}:{port}/v1/events"


def test_a_slow_resolver_cannot_outlast_the_timeout(names: list[str]) -> None:
    with DefaultEventDispatcher(timeout=0.5, retry=ONCE) as d:
        started = time.monotonic()
        d.dispatch_event(LogEvent(_url("slow-dns.test", 9), payload([visitor()])))
        assert time.monotonic() - started < 5  # the lookup itself takes 30 s
        assert d.stats().failed == {"timeout": 1}
    assert names == ["slow-dns.test"]


def test_a_slow_resolver_cannot_outlast_the_deadline_through_httpx(names: list[str]) -> None:
    """The httpx path (proxies, GET) resolves through the same cache."""
    client = httpx.Client(transport=deadline_transport(resolver=HostCache()), timeout=10)
    started = time.monotonic()
    with client, pytest.raises(httpx.ConnectTimeout), deadline(0.5):
        client.post(_url("slow-dns.test", 9), content=b"{}")
    assert time.monotonic() - started < 5


def test_a_host_is_resolved_once_and_keeps_its_name(names: list[str]) -> None:
    with scripted_server() as server, DefaultEventDispatcher() as d:
        for _ in range(5):
            d.dispatch_event(LogEvent(_url("sink.test", server.port), payload([visitor()])))
        d.dispatch_event(LogEvent(_url("sink.test", server.port), {"a": "1"}, http_verb="GET"))
        assert d.stats().delivered == 6
        assert server.connections == 2  # one per path: http.client's and httpx's
    assert names == ["sink.test"]  # the GET over httpx found it in the cache
    assert {r.headers["Host"] for r in server.received} == {f"sink.test:{server.port}"}
    first = server.received[0].headers
    assert first["User-Agent"].startswith("python-httpx/") and first["Accept"] == "*/*"


def test_dns_cache_ttl_zero_looks_up_every_new_connection(names: list[str]) -> None:
    close = Reply(204, headers={"Connection": "close"})
    with (
        scripted_server(close, close, close) as server,
        DefaultEventDispatcher(dns_cache_ttl=0) as d,
    ):
        for _ in range(3):
            d.dispatch_event(LogEvent(_url("sink.test", server.port), payload([visitor()])))
        assert d.stats().delivered == 3 and server.connections == 3
    assert names == ["sink.test"] * 3


def test_an_unknown_host_is_a_network_failure(names: list[str]) -> None:
    with DefaultEventDispatcher(retry=ONCE) as d:
        d.dispatch_event(LogEvent(_url("unknown.test", 9), payload([visitor()])))  # proxied: dead
        d.dispatch_event(LogEvent(_url("sink.test", _closed_port()), payload([visitor()])))
        assert d.stats().failed == {"network": 2}


def test_the_cache_shares_one_lookup_and_does_not_cache_failures() -> None:
    calls: list[str] = []
    release = threading.Event()

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        release.wait(10)
        if host == "bad.test":
            raise socket.gaierror("no such host")
        return ["127.0.0.1"]

    cache = HostCache(ttl=60, resolve=resolve)
    results: list[list[str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.addresses("a.test", 80, 10)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    time.sleep(0.1)
    release.set()
    for t in threads:
        t.join(10)
    assert results == [["127.0.0.1"]] * 4 and calls == ["a.test"]
    assert cache.addresses("A.TEST", 80, 1) == ["127.0.0.1"] and calls == ["a.test"]
    for _ in range(2):
        with pytest.raises(OSError):
            cache.addresses("bad.test", 80, 10)
    assert calls == ["a.test", "bad.test", "bad.test"]
    assert cache.addresses("::1", 80, 0) == ["::1"] and cache.addresses("localhost", 1, 0)
    assert len(calls) == 3  # literals and localhost are never looked up


def test_many_threads_never_share_a_connection() -> None:
    with scripted_server() as server, DefaultEventDispatcher() as d:

        def send() -> None:
            for _ in range(25):
                d.dispatch_event(LogEvent(server.url, payload([visitor()])))

        threads = [threading.Thread(target=send) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        stats = d.stats()
        assert (stats.delivered, stats.attempts, stats.failed) == (100, 100, {})
        assert len(server.received) == 100 and server.connections <= 8


def test_a_connection_the_server_dropped_is_replaced_without_a_retry() -> None:
    """The server closes each connection after its answer, without saying so."""
    with _one_shot_server() as (port, requests), DefaultEventDispatcher() as d:
        for _ in range(5):
            d.dispatch_event(LogEvent(f"http://127.0.0.1:{port}/v1/events", payload([visitor()])))
            time.sleep(0.05)
        d.dispatch_event(LogEvent(f"http://127.0.0.1:{port}/v1/events", payload([visitor()])))
        stats = d.stats()
        assert (stats.delivered, stats.attempts) == (6, 6)
        assert requests == [b"POST /v1/events HTTP/1.1"] * 6


def test_a_proxied_url_still_goes_to_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    with scripted_server() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url)
        monkeypatch.setenv("http_proxy", proxy.base_url)
        with DefaultEventDispatcher() as d:
            d.dispatch_event(LogEvent("http://events.example.test/v1/events", payload([visitor()])))
            assert d.stats().delivered == 1
        assert [r.path for r in proxy.received] == ["http://events.example.test/v1/events"]


def test_tls_verifies_the_host_name_not_the_address(
    names: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = _certificate(tmp_path, "sink.test")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with _tls_server(cert, key) as (port, seen):
        with DefaultEventDispatcher(retry=ONCE) as d:
            d.dispatch_event(LogEvent(_url("sink.test", port, "https"), payload([visitor()])))
            assert d.stats().delivered == 1
            # The same server by its address: the certificate does not name it.
            d.dispatch_event(LogEvent(_url("127.0.0.1", port, "https"), payload([visitor()])))
            stats = d.stats()
        assert stats.delivered == 1 and stats.failed == {"network": 1}
        assert "sink.test" in seen  # SNI carried the name
    assert names == ["sink.test"]


# -- BatchDispatcher's senders take the same direct path ----------------------------


def test_batch_senders_post_direct_and_a_users_client_still_gets_every_request() -> None:
    """The batch senders' own POSTs go on http.client (no Accept-Encoding asked: httpx
    asks for gzip and deflate), a user's httpx.Client is used for every request."""
    with scripted_server() as server:
        with BatchDispatcher(endpoint=server.base_url, flush_interval=0.01) as bd:
            for _ in range(3):
                bd.dispatch_event(LogEvent(URL, payload([visitor()])))
            assert bd.flush(10).complete
        ours = list(server.received)
        with (
            httpx.Client() as mine,
            BatchDispatcher(endpoint=server.base_url, http_client=mine) as bd,
        ):
            bd.dispatch_event(LogEvent(URL, payload([visitor()])))
            assert bd.flush(10).complete
        theirs = server.received[len(ours) :]
    assert ours and all("Accept-Encoding" not in r.headers for r in ours)
    assert all(r.headers["Content-Type"] == "application/json" for r in ours)
    assert [r.path for r in ours] == ["/v1/events"] * len(ours)
    assert theirs and all("Accept-Encoding" in r.headers for r in theirs)


def test_a_large_body_is_sent_whole_after_its_head() -> None:
    """Bodies over 64 KB go in a second write (no copy): the server gets them whole."""
    big = payload([visitor() for _ in range(600)])
    with scripted_server() as server, DefaultEventDispatcher() as d:
        d.dispatch_event(LogEvent(server.url, big))
        assert d.stats().delivered == 600
    (received,) = server.received
    assert len(received.body) > 65_536
    assert json.loads(received.body) == big


def test_batch_senders_send_a_proxied_url_to_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    with scripted_server() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url)
        monkeypatch.setenv("http_proxy", proxy.base_url)
        with BatchDispatcher(endpoint="http://events.example.test") as bd:
            bd.dispatch_event(LogEvent(URL, payload([visitor()])))
            assert bd.flush(10).complete
        assert [r.path for r in proxy.received] == ["http://events.example.test/v1/events"]


def test_batch_senders_verify_tls_by_host_name(
    names: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = _certificate(tmp_path, "sink.test")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with _tls_server(cert, key) as (port, seen):
        with BatchDispatcher(endpoint=f"https://sink.test:{port}", retry=ONCE) as bd:
            bd.dispatch_event(LogEvent(URL, payload([visitor()])))
            assert bd.flush(10).complete
            assert bd.stats().delivered == 1
        assert "sink.test" in seen
    assert names == ["sink.test"]


def test_batch_senders_replace_a_dropped_connection() -> None:
    with _one_shot_server() as (port, requests):
        with BatchDispatcher(endpoint=f"http://127.0.0.1:{port}", retry=ONCE) as bd:
            for _ in range(4):
                bd.dispatch_event(LogEvent(URL, payload([visitor()])))
                assert bd.flush(10).complete
            stats = bd.stats()
        assert (stats.delivered, stats.failed) == (4, {})
        assert requests == [b"POST /v1/events HTTP/1.1"] * 4


# -- helpers ------------------------------------------------------------------------


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


class _OneShot:
    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.requests: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests.append(head.split(b"\r\n")[0])
                conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")


@contextmanager
def _one_shot_server() -> Iterator[tuple[int, list[bytes]]]:
    server = _OneShot()
    try:
        yield int(server.listener.getsockname()[1]), server.requests
    finally:
        server.stop.set()
        server.thread.join(5)
        server.listener.close()


def _certificate(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}"),
            *("-addext", f"subjectAltName=DNS:{name}"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@contextmanager
def _tls_server(cert: Path, key: Path) -> Iterator[tuple[int, list[str]]]:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def sni(sock: object, name: str | None, ctx: object) -> None:
        seen.append(str(name))

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = sni  # type: ignore[assignment]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1]), seen
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("visitors", [1, 40_000], ids=["no answer", "body never read"])
def test_a_blocking_plain_socket_still_ends_at_the_deadline(visitors: int) -> None:
    """Plain-HTTP connections are blocking sockets bounded by SO_RCVTIMEO/SO_SNDTIMEO
    (one GIL hand-back per send or receive, not a poll before each): a server that
    never answers, or never reads an 11 MB body (more than both socket buffers hold),
    still ends the request at its deadline, as a timeout."""
    body = json.dumps(payload([visitor() for _ in range(visitors)])).encode()
    with silent_server() as url:
        client = httpx.Client()
        pool = DirectPool.for_client(client, HostCache())
        assert pool is not None
        route = pool.route(url)
        assert route is not None
        started = time.monotonic()
        with pytest.raises(httpx.TimeoutException):
            pool.post(route, {"Content-Type": "application/json"}, body, 0.5)
        assert 0.4 < time.monotonic() - started < 5.0
        pool.close()
        client.close()
