"""Connection-level limits for the two services: headers, idle sockets, saturation.

Both services speak HTTP/1.1 through uvicorn's httptools protocol (llhttp, the
parser of Node.js: about three times the requests per second of uvicorn's h11
protocol on one core, issue 16). uvicorn leaves three doors open: no bound on how
long a client may take to send its request headers (a socket that sends nothing, or
one byte a second, is kept forever), none on their size, and a
``limit_concurrency`` whose plain-text 503 (no ``Retry-After``) also refuses
``/healthz``. :class:`GuardedProtocol` closes them:

* **Header deadline**: a request's headers must be complete within
  ``header_timeout`` seconds of the connection opening or of the request's first
  byte (the keep-alive idle time between requests is ``keep_alive_timeout``, armed by
  uvicorn after each response). Late: ``408`` (JSON) and the connection is closed;
  a socket that never sent a byte is just closed.
* **Header size**: more than ``max_header_bytes`` of request line plus headers is
  answered ``431`` (JSON) and closed, before any of it reaches the application; a
  header line that never ends is cut off the same way, so a connection buffers at
  most one read (256 KiB) beyond the limit.
* **Saturation**: over ``max_connections`` open connections, requests are answered
  ``503`` with ``Retry-After`` and a JSON body, except the operations paths
  (``/healthz``, ``/readyz``, ``/metrics``, ``/stats``), which are always served.
  Past ``max_connections + reserve`` a new connection is closed at once, so that file
  descriptors and memory stay bounded whatever the clients do.

Each refusal is reported to ``on_refused(reason)`` (``header_too_large``,
``header_timeout``, ``invalid_http``, ``too_many_connections``, ``connection_limit``):
the relay counts them in ``xpevents_relay_rejected_requests_total``, the collector in
``/stats`` ``rejected_by_reason``.

A malformed request (``Content-Length`` and ``Transfer-Encoding`` together, two
``Content-Length`` headers, a ``Transfer-Encoding`` that does not end in ``chunked``,
a bad chunk size...: llhttp's strict mode) is answered ``400`` (JSON) and the
connection closed, so nothing can be smuggled behind a request. The log gets one line
per kind of refusal every 10 seconds at most (uvicorn would write one per request).

**Upgrades are ignored** (RFC 9110 section 7.8 lets a server do so): neither service
speaks WebSocket or HTTP/2, and llhttp ends a request with ``Connection: Upgrade`` at
its headers, leaving its body unread (uvicorn then hands the application an empty
body and stops reading the connection). A client that offers an upgrade (``curl
--http2`` on ``http://`` sends ``Upgrade: h2c`` with every POST) would have its events
refused as invalid JSON. :class:`GuardedProtocol` instead parses such a request again
without its ``Upgrade`` header and answers it over HTTP/1.1 like any other. ``CONNECT``
is answered ``400``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import httptools
import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from xpevents._internal.ratelimit import LogEvery
from xpevents.errors import ConfigError

__all__ = ["OPERATIONS_PATHS", "ConnectionLimits", "GuardedProtocol", "guarded_protocol"]

OPERATIONS_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics", "/stats"})
"""Paths served even while the service is saturated."""

_encode = msgspec.json.Encoder().encode
logger = logging.getLogger("xpevents.serving")
_log_every = LogEvery(10.0)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Limits of :class:`GuardedProtocol` (the services' command-line options).

    Attributes:
        max_connections: open connections above which requests get ``503`` (the
            operations paths excepted).
        reserve: connections allowed above ``max_connections`` for the operations
            paths; beyond, a new connection is closed at once.
        max_header_bytes: request line plus headers, in bytes (``431`` above).
        header_timeout: seconds for a request's headers to arrive (``408`` after).
        keep_alive_timeout: seconds an idle keep-alive connection stays open.
        retry_after: seconds sent in the ``Retry-After`` of a saturation ``503``.
    """

    max_connections: int = 1024
    reserve: int = 32
    max_header_bytes: int = 16_384
    header_timeout: float = 10.0
    keep_alive_timeout: float = 5.0
    retry_after: int = 1

    def validate(self) -> ConnectionLimits:
        """Return ``self``; :class:`ConfigError` naming the field that is out of range."""
        for name in ("max_connections", "max_header_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be >= 1")
        for name in ("reserve", "retry_after"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be >= 0")
        for name in ("header_timeout", "keep_alive_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be > 0 seconds")
        return self

    def uvicorn_options(self) -> dict[str, Any]:
        """The ``uvicorn.Config`` options these limits set (saturation is ours)."""
        return {
            "limit_concurrency": None,
            "timeout_keep_alive": self.keep_alive_timeout,
        }


def _error_bytes(status: int, reason: str, message: str, extra: bytes = b"") -> bytes:
    body = _encode({"error": message, "reason": reason})
    phrase = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}.get(
        status, b"Bad Request"
    )
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n%s\r\n%s" % (status, phrase, len(body), extra, body)
    )


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools (llhttp) protocol with the limits of the module docstring."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    refusal_hooks: ClassVar[tuple[Callable[[str], object], ...]] = ()
    """Each is called with the reason of each refusal (the services count them)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._head_open = False  # a request's first byte was parsed, its headers not yet
        self._head_bytes = 0  # request line and complete headers parsed, in bytes
        self._head_fed = 0  # whole reads fed while a request head was open
        self._plain_head: bytes | None = None  # an upgrade request's head, parsed again
        inner = self.app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope.get("path") not in OPERATIONS_PATHS and self._saturated():
                await self._send_busy(send)
                return
            await inner(scope, receive, send)

        self.app = app

    def _saturated(self) -> bool:
        return len(self.connections) > self.limits.max_connections

    def _count(self, reason: str) -> None:
        for hook in self.refusal_hooks:
            hook(reason)

    async def _send_busy(self, send: Any) -> None:
        self._count("too_many_connections")
        limits = self.limits
        body = _encode(
            {
                "error": f"more than {limits.max_connections} connections open; retry later",
                "reason": "too_many_connections",
            }
        )
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(limits.retry_after).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    # -- the connection -------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limits = self.limits
        if len(self.connections) > limits.max_connections + limits.reserve:
            self._count("connection_limit")
            transport.abort()  # over the hard ceiling: not even read
            return
        self._arm_header_timer()  # a socket that never sends a byte is closed

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        pending: bytes | None = data
        while pending is not None:  # a loop: any number of upgrade requests in one read
            pending = self._feed(pending)

    def _feed(self, data: bytes) -> bytes | None:
        """Parse ``data``; what to parse next (an upgrade request again, without its
        upgrade, and what followed it), or ``None``."""
        open_before = self._head_open
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.send_400_response("invalid HTTP request")
            return None
        except httptools.HttpParserUpgrade as upgrade:
            return self._without_upgrade(data[upgrade.args[0] if upgrade.args else len(data) :])
        if open_before and self._head_open and not self.transport.is_closing():
            # The whole read belongs to a head still incomplete: llhttp holds a header
            # line in parts until it ends, so this bounds what a connection can buffer.
            self._head_fed += len(data)
            if self._head_fed > self.limits.max_header_bytes:
                self._refuse_too_large()
        return None

    # -- parser callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open = True
        self._head_bytes = self._head_fed = 0
        self._arm_header_timer()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._add_head_bytes(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._add_head_bytes(len(name) + len(value) + 4)

    def on_headers_complete(self) -> None:
        self._head_open = False
        self._cancel_header_timer()
        if self.parser.should_upgrade():
            # llhttp stops at these headers; the request is parsed again without them
            self._plain_head = self._head_without_upgrade()
            return
        self._start_request()

    def _start_request(self) -> None:
        """Hand the request whose headers are complete to the application (uvicorn's
        request cycle and task; :mod:`xpevents.serving.direct` answers some itself)."""
        HttpToolsProtocol.on_headers_complete(self)

    def on_body(self, body: bytes) -> None:
        if self._plain_head is not None:  # an llhttp that reads an upgrade's body
            self._plain_head += body
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._plain_head is None:
            super().on_message_complete()

    # -- upgrades: ignored ----------------------------------------------------------

    def _head_without_upgrade(self) -> bytes:
        """The request line and headers just parsed, minus ``Upgrade`` and the
        ``upgrade`` token of ``Connection``."""
        method = self.parser.get_method()
        lines = [b"%s %s HTTP/%s\r\n" % (method, self.url, self.parser.get_http_version().encode())]
        for name, value in self.headers:
            if name == b"upgrade":
                continue
            if name == b"connection":
                tokens = [t.strip() for t in value.split(b",")]
                value = b", ".join(t for t in tokens if t and t.lower() != b"upgrade")
                if not value:
                    continue
            lines.append(b"%s: %s\r\n" % (name, value))
        lines.append(b"\r\n")
        return b"".join(lines)

    def _without_upgrade(self, rest: bytes) -> bytes | None:
        """A new parser, and the bytes to feed it: the head without its upgrade, then
        ``rest`` (the body and whatever follows); ``None`` after refusing ``CONNECT``."""
        head, self._plain_head = self._plain_head, None
        if head is None or head.startswith(b"CONNECT "):
            self._close_with(400, "invalid_http", "CONNECT is not supported")
            return None
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        return head + rest

    def _add_head_bytes(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.limits.max_header_bytes:
            # Raised inside a parser callback: uvicorn's data_received gets an
            # HttpParserError and calls send_400_response, which answers 431.
            raise ValueError("request headers too large")

    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this from its ``except HttpParserError`` clause: the exception
        # being handled says what llhttp (or a parser callback) refused.
        if self._head_bytes > self.limits.max_header_bytes:  # raised by _add_head_bytes
            self._refuse_too_large()
        else:
            self._close_with(400, "invalid_http", f"invalid HTTP request: {_problem(msg)}")

    # -- timers and answers ---------------------------------------------------------

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(
            self.limits.header_timeout, self._headers_too_slow
        )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if not self._head_open:
            self.transport.close()  # idle since the connection opened: nothing to answer
            return
        self._close_with(
            408,
            "header_timeout",
            f"request headers not received within {self.limits.header_timeout} s",
        )

    def _refuse_too_large(self) -> None:
        self._close_with(
            431, "header_too_large", f"request headers exceed {self.limits.max_header_bytes} bytes"
        )

    def _close_with(self, status: int, reason: str, message: str) -> None:
        self._head_open = False
        self._count(reason)
        if _log_every.due(reason):
            logger.warning("refused a request (%d %s): %s", status, reason, message)
        self._cancel_header_timer()
        if not self.transport.is_closing():
            self.transport.write(_error_bytes(status, reason, message))
            self.transport.close()


def _problem(fallback: str) -> str:
    """What the parser refused, from the exception being handled (else ``fallback``)."""
    failure = sys.exc_info()[1]
    if isinstance(failure, httptools.HttpParserCallbackError) and failure.__context__:
        failure = failure.__context__  # raised in a callback: the real reason
    if isinstance(failure, UnicodeError | httptools.HttpParserInvalidURLError):
        return "the request target is not a valid URL (percent-encode non-ASCII characters)"
    if failure is None or not str(failure):
        return fallback
    return str(failure)


def guarded_protocol(
    limits: ConnectionLimits,
    base: type[GuardedProtocol] = GuardedProtocol,
    on_refused: Callable[[str], object] | None = None,
) -> type[GuardedProtocol]:
    """A subclass of ``base`` bound to ``limits`` and ``on_refused(reason)``
    (uvicorn instantiates the class)."""
    limits.validate()
    hooks = () if on_refused is None else (on_refused,)
    return type(base.__name__, (base,), {"limits": limits, "refusal_hooks": hooks})
