"""Keep-alive HTTP/1.1 POSTs on :mod:`http.client`, for DefaultEventDispatcher's own client.

A POST through ``httpx.Client`` costs several hundred microseconds more than the same
POST on :mod:`http.client` on a small box (docs/dispatchers.md has the figures), and
the synchronous dispatcher makes its caller wait for every one. :class:`DirectPool`
sends the POSTs that httpx would send **direct** itself, with httpx's own decisions:

* proxies: a URL goes direct only when the httpx client built from the same
  environment (``HTTP(S)_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) would not proxy it;
  anything proxied, or with credentials or a non-ASCII host in the URL, goes
  through httpx as before;
* TLS: the SSL context of that httpx client (certifi, or ``SSL_CERT_FILE`` /
  ``SSL_CERT_DIR``), with the URL's host name for SNI and the certificate check;
* headers: httpx's defaults (``User-Agent``, ``Accept``) under the event's own, no
  compressed answers asked for; idle connections are dropped after 5 s, as httpx does;
  no cookie jar (an events endpoint sets none), no redirects followed (nor does httpx
  by default).

Every step is bounded by the call's deadline: DNS through the
:class:`~xpevents.dispatch.resolve.HostCache`, then connect, TLS handshake, the write
and each read are each given only what is left of it (on plain HTTP through the kernel's
``SO_SNDTIMEO``/``SO_RCVTIMEO`` on a blocking socket: a Python socket timeout polls
before every call, one more GIL hand-back each, which a busy thread makes wait for the
switch interval; TLS keeps Python's timeouts). Errors are raised as the httpx
exceptions of the same meaning, so they are classified exactly as before. A connection
is used by one thread at a time: it is taken out of the idle list for its request.
"""

from __future__ import annotations

import http.client
import io
import re
import select
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from xpevents.dispatch.resolve import HostCache

__all__ = ["Answer", "DirectPool"]

KEEPALIVE_EXPIRY = 5.0
"""Seconds an idle connection is kept (httpx's default)."""
MAX_IDLE = 8
"""Idle connections kept per origin."""
_ILLEGAL = re.compile(r"[\r\n\x00]")
_TIMEVAL = struct.Struct("@ll")
"""``struct timeval`` (seconds, microseconds) for ``SO_SNDTIMEO`` / ``SO_RCVTIMEO``."""
_KERNEL_TIMEOUTS = sys.platform.startswith("linux") or sys.platform == "darwin"
"""Where plain sockets are blocking with kernel timeouts (Windows takes milliseconds
there, and has no ``sendmsg``: Python's timeouts stay)."""
_JOIN_BELOW = 65_536
"""Over TLS, bodies up to this size are sent in one write with their head (one copy of a
small body is cheaper than a second write); larger ones after it, without a copy."""


class Answer:
    """The status, headers and body of one answer (what the classifier reads)."""

    __slots__ = ("_headers", "_raw_headers", "body", "status_code")

    def __init__(self, status: int, raw_headers: list[tuple[str, str]], body: bytes) -> None:
        self.status_code = status
        self._raw_headers = raw_headers
        self._headers: dict[str, str] | None = None
        self.body = body

    @property
    def headers(self) -> Mapping[str, str]:
        if self._headers is None:
            self._headers = {name.lower(): value for name, value in self._raw_headers}
        return self._headers

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class _Route:
    __slots__ = ("heads", "host", "key", "target")

    def __init__(self, key: tuple[str, str, int], target: str, host: str) -> None:
        self.key = key  # (scheme, host, port)
        self.target = target  # path and query, as sent
        self.host = host  # the Host header
        self.heads: dict[tuple[tuple[str, str], ...], bytes] = {}


class _Reader(io.RawIOBase):
    """Socket reads, each given only what is left of the deadline."""

    def __init__(self, sock: socket.socket, ends: float) -> None:
        self._sock = sock
        self._ends = ends

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._ends - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request's total deadline passed")
        sock = self._sock
        if not _kernel_timed(sock):
            sock.settimeout(remaining)
            return sock.recv_into(buffer)
        _kernel_timeout(sock, socket.SO_RCVTIMEO, remaining)
        try:
            return sock.recv_into(buffer)
        except BlockingIOError:  # SO_RCVTIMEO ran out
            raise TimeoutError("the request's total deadline passed") from None


class _Socket:
    """What ``http.client.HTTPResponse`` needs of a socket: a deadline-bound reader."""

    def __init__(self, sock: socket.socket, ends: float) -> None:
        self._reader: io.BufferedReader[Any] = io.BufferedReader(_Reader(sock, ends))

    def makefile(self, mode: str) -> io.BufferedReader[Any]:
        return self._reader


class DirectPool:
    """Pooled keep-alive connections for the POSTs that ``client`` would send direct."""

    def __init__(self, client: httpx.Client, hosts: HostCache, ssl_context: ssl.SSLContext):
        self._client = client
        self._hosts = hosts
        self._ssl = ssl_context
        self._defaults = [  # as httpx sends them (their casing), less compression
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in client.headers.raw
            if name.lower() not in (b"accept-encoding", b"host")
        ]
        self._routes: dict[str, _Route | None] = {}
        self._idle: dict[tuple[str, str, int], list[tuple[float, socket.socket]]] = {}
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def for_client(cls, client: httpx.Client, hosts: HostCache) -> DirectPool | None:
        """A pool beside ``client``; ``None`` if this httpx does not show what it needs."""
        context = getattr(getattr(client._transport, "_pool", None), "_ssl_context", None)
        if not isinstance(context, ssl.SSLContext) or not callable(
            getattr(client, "_transport_for_url", None)
        ):
            return None
        return cls(client, hosts, context)

    def route(self, url: str) -> _Route | None:
        """How to send to ``url`` directly; ``None``: it goes through httpx."""
        try:
            return self._routes[url]
        except KeyError:
            pass
        route = self._new_route(url)
        if len(self._routes) >= 256:
            self._routes.clear()
        self._routes[url] = route
        return route

    def post(
        self, route: _Route, headers: Mapping[str, str], body: bytes, remaining: float
    ) -> Answer:
        """POST ``body``; raises httpx's exceptions for what went wrong."""
        ends = time.monotonic() + remaining
        data = (self._head(route, headers, len(body)), body)
        sock, reused = self._take(route.key)
        try:
            if sock is None:
                sock = self._connect(route, ends)
            try:
                answer, keep = self._exchange(sock, data, ends)
            except (ConnectionError, http.client.BadStatusLine, ssl.SSLEOFError):
                if not reused:  # a fresh connection failed: that is the answer
                    raise
                sock.close()  # the server had let go of this idle one: once more, fresh
                sock = self._connect(route, ends)
                answer, keep = self._exchange(sock, data, ends)
        except BaseException as exc:
            if sock is not None:
                sock.close()
            converted = _as_httpx(exc)
            if converted is exc:
                raise
            raise converted from exc
        if keep:
            self._give_back(route.key, sock)
        else:
            sock.close()
        return answer

    def close(self) -> None:
        """Close every idle connection (and any given back later)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for _, sock in connections:
                sock.close()

    def reset_after_fork(self) -> None:
        """In a forked child: forget (do not use) the sockets shared with the parent."""
        self._lock = threading.Lock()
        self._idle = {}

    # -- internals -------------------------------------------------------------------

    def _new_route(self, url: str) -> _Route | None:
        try:
            parts = urlsplit(url)
            port = parts.port
            host = parts.hostname
        except ValueError:
            return None
        if parts.scheme not in ("http", "https") or not host or not url.isascii():
            return None
        if parts.username is not None or parts.password is not None:
            return None  # httpx sends them as basic auth
        try:
            if self._client._transport_for_url(httpx.URL(url)) is not self._client._transport:
                return None  # a proxy applies
        except httpx.InvalidURL:
            return None
        default = 443 if parts.scheme == "https" else 80
        port = default if port is None else port
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        netloc = parts.netloc.rpartition("@")[2]
        if port == default and parts.port is not None:
            netloc = netloc.rpartition(":")[0]
        if _ILLEGAL.search(target + netloc) or " " in target:
            return None
        return _Route((parts.scheme, host, port), target, netloc)

    def _head(self, route: _Route, headers: Mapping[str, str], length: int) -> bytes:
        key = tuple(headers.items())
        head = route.heads.get(key)
        if head is None:
            given = {name.lower() for name in headers}
            lines = [f"POST {route.target} HTTP/1.1", f"Host: {route.host}"]
            lines += [f"{n}: {v}" for n, v in self._defaults if n.lower() not in given]
            for name, value in headers.items():
                if name.lower() in ("host", "content-length", "transfer-encoding"):
                    continue
                if _ILLEGAL.search(f"{name}{value}") or not name or ":" in name:
                    raise httpx.LocalProtocolError(f"illegal header {name!r}: {value!r}")
                lines.append(f"{name}: {value}")
            head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
            if len(route.heads) < 16:
                route.heads[key] = head
        return head + b"%d\r\n\r\n" % length

    def _take(self, key: tuple[str, str, int]) -> tuple[socket.socket | None, bool]:
        now = time.monotonic()
        with self._lock:
            connections = self._idle.get(key)
            while connections:
                since, sock = connections.pop()
                if now - since < KEEPALIVE_EXPIRY and not _readable(sock):
                    return sock, True
                sock.close()  # expired, or the server closed it (or sent something)
        return None, False

    def _give_back(self, key: tuple[str, str, int], sock: socket.socket) -> None:
        with self._lock:
            connections = self._idle.setdefault(key, [])
            if len(connections) < MAX_IDLE and not self._closed:
                connections.append((time.monotonic(), sock))
                return
        sock.close()

    def _connect(self, route: _Route, ends: float) -> socket.socket:
        scheme, host, port = route.key
        try:
            addresses = self._hosts.addresses(host, port, _left(ends))
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc)) from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot resolve {host!r}: {exc}") from None
        failure: OSError | None = None
        for address in addresses:  # in the resolver's order, like socket.create_connection
            try:
                sock = socket.create_connection((address, port), _left(ends))
            except TimeoutError as exc:
                raise httpx.ConnectTimeout(f"connecting to {host!r}: {exc}") from None
            except OSError as exc:
                failure = exc
                continue
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if scheme == "https":
                    sock.settimeout(_left(ends))
                    sock = self._ssl.wrap_socket(sock, server_hostname=host)
                elif _KERNEL_TIMEOUTS:
                    sock.settimeout(None)  # blocking, bounded by SO_SNDTIMEO/SO_RCVTIMEO
            except BaseException:
                sock.close()
                raise
            return sock
        self._hosts.forget(host, port)  # none answered: look it up afresh next time
        raise httpx.ConnectError(f"cannot connect to {host!r}: {failure!r}")

    @staticmethod
    def _exchange(
        sock: socket.socket, data: tuple[bytes, bytes], ends: float
    ) -> tuple[Answer, bool]:
        if _kernel_timed(sock):
            _send(sock, data, ends)  # head and body in one sendmsg, no copy
        else:
            head, body = data  # TLS: a small body goes in one write with its head
            for part in (head + body,) if len(body) <= _JOIN_BELOW else data:
                sock.settimeout(_left(ends))
                sock.sendall(part)
        response = http.client.HTTPResponse(_Socket(sock, ends), method="POST")  # type: ignore[arg-type]
        response.begin()
        body = response.read()
        answer = Answer(response.status, response.getheaders(), body)
        return answer, not response.will_close


def _kernel_timed(sock: socket.socket) -> bool:
    """Whether ``sock`` is a blocking plain socket bounded by kernel timeouts."""
    return _KERNEL_TIMEOUTS and not isinstance(sock, ssl.SSLSocket)


def _kernel_timeout(sock: socket.socket, option: int, seconds: float) -> None:
    """Bound the next blocking send or receive on ``sock`` by ``seconds`` (at least 1 µs:
    a zero ``timeval`` would mean no bound)."""
    micros = max(1, int(seconds * 1_000_000))
    sock.setsockopt(
        socket.SOL_SOCKET, option, _TIMEVAL.pack(micros // 1_000_000, micros % 1_000_000)
    )


def _send(sock: socket.socket, data: tuple[bytes, ...], ends: float) -> None:
    """Write ``data`` on a blocking plain socket: one ``sendmsg`` (head and body in one
    system call), bounded by the deadline through ``SO_SNDTIMEO``.

    A socket with a Python timeout polls before every call, and each poll gives the GIL
    up once more: under a busy producer thread every such hand-back waits up to the
    switch interval (5 ms) to get the GIL again. A blocking call gives it up once.
    """
    views = [memoryview(part) for part in data]
    while views:
        _kernel_timeout(sock, socket.SO_SNDTIMEO, _left(ends))
        try:
            sent = sock.sendmsg(views)
        except BlockingIOError:  # SO_SNDTIMEO ran out before anything was written
            raise TimeoutError("the request's total deadline passed") from None
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if views and sent:
            views[0] = views[0][sent:]


def _left(ends: float) -> float:
    remaining = ends - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("the request's total deadline passed")
    return remaining


def _readable(sock: socket.socket) -> bool:
    """True when an idle connection has something to read: the server closed it."""
    try:
        if hasattr(select, "poll"):  # any descriptor number, unlike select()
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _as_httpx(exc: BaseException) -> BaseException:
    """The httpx exception of the same meaning (what the classifier knows)."""
    if isinstance(exc, httpx.HTTPError) or not isinstance(exc, Exception):
        return exc
    if isinstance(exc, TimeoutError):  # socket.timeout, and our deadline
        return httpx.ReadTimeout(f"timed out: {exc}")
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return httpx.ConnectError(f"TLS: {exc}")
    if isinstance(exc, http.client.HTTPException | ConnectionError):
        return httpx.RemoteProtocolError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, OSError):
        return httpx.ConnectError(f"{type(exc).__name__}: {exc}")
    return exc
