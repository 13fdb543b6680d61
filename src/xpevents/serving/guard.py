"""Connection-level limits for the two services: headers, idle sockets, saturation.

uvicorn's own HTTP protocols leave three doors open: no bound on how long a client
may take to send its request headers (a socket that sends nothing, or one byte a
second, is kept forever), no answer of its own to oversized headers but a plain-text
400, and a ``limit_concurrency`` whose plain-text 503 (no ``Retry-After``) also
refuses ``/healthz``. :class:`GuardedH11Protocol` (uvicorn's h11 protocol) closes them:

* **Header deadline**: a request's headers must be complete within
  ``header_timeout`` seconds of the connection opening or of its first byte after
  the previous response (the keep-alive idle time is ``keep_alive_timeout``, armed by
  uvicorn after each response). Late: ``408`` (JSON) and the connection is closed;
  a socket that never sent a byte is just closed.
* **Header size**: more than ``max_header_bytes`` of request line plus headers is
  answered ``431`` (JSON) and closed, before any of it reaches the application.
* **Saturation**: over ``max_connections`` open connections, requests are answered
  ``503`` with ``Retry-After`` and a JSON body, except the operations paths
  (``/healthz``, ``/readyz``, ``/metrics``, ``/stats``), which are always served.
  Past ``max_connections + reserve`` a new connection is closed at once, so that file
  descriptors and memory stay bounded whatever the clients do.

A malformed request (``Content-Length`` and ``Transfer-Encoding`` together, two
different lengths, a bad chunk size...) is answered ``400`` (JSON) and the connection
closed, so nothing can be smuggled behind a request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import h11
import msgspec
from uvicorn.protocols.http.h11_impl import H11Protocol

from xpevents.errors import ConfigError

__all__ = ["OPERATIONS_PATHS", "ConnectionLimits", "GuardedH11Protocol", "guarded_protocol"]

OPERATIONS_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics", "/stats"})
"""Paths served even while the service is saturated."""

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Limits of :class:`GuardedH11Protocol` (the services' command-line options).

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
            "h11_max_incomplete_event_size": self.max_header_bytes,
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


class _Connection(h11.Connection):
    """h11's connection, refusing a request whose headers, parsed, exceed the limit.

    h11's own limit only bounds an *incomplete* request head; one that arrives whole
    in a single read would pass it.
    """

    def __init__(self, max_header_bytes: int) -> None:
        super().__init__(h11.SERVER, max_header_bytes)
        self.max_header_bytes = max_header_bytes
        self.headers_too_large = False

    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, h11.Request):
            size = len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers)
            if size > self.max_header_bytes:
                self.headers_too_large = True
                raise h11.RemoteProtocolError("request headers too large", 431)
            names = {name for name, _ in event.headers}
            if b"content-length" in names and b"transfer-encoding" in names:
                # RFC 9112 6.1: TE wins, but a proxy in front may have read CL: refuse.
                raise h11.RemoteProtocolError("both Content-Length and Transfer-Encoding")
        return event


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the limits of the module docstring."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = self._guarded_conn = _Connection(self.limits.max_header_bytes)
        self._header_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = True
        self._received_any = False
        inner = self.app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope.get("path") not in OPERATIONS_PATHS and self._saturated():
                await self._send_busy(send)
                return
            await inner(scope, receive, send)

        self.app = app

    def _saturated(self) -> bool:
        return len(self.connections) > self.limits.max_connections

    async def _send_busy(self, send: Any) -> None:
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
            transport.abort()  # over the hard ceiling: not even read
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._received_any = True
        if self._awaiting_headers and self._header_timer is None:
            self._arm_header_timer()  # the first byte of a request after a keep-alive wait
        super().data_received(data)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a new request's headers were complete
            self._awaiting_headers = False
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._awaiting_headers = True  # the keep-alive timer runs until the next byte

    def send_400_response(self, msg: str) -> None:
        conn = self._guarded_conn
        if conn.headers_too_large or len(conn.trailing_data[0]) > self.limits.max_header_bytes:
            self._close_with(
                431,
                "header_too_large",
                f"request headers exceed {self.limits.max_header_bytes} bytes",
            )
        else:
            self._close_with(400, "invalid_http", f"invalid HTTP request: {msg}")

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
        if not self._awaiting_headers or self.transport.is_closing():
            return
        if not self._received_any or not self.conn.trailing_data[0]:
            self.transport.close()  # idle: nothing to answer
            return
        self._close_with(
            408,
            "header_timeout",
            f"request headers not received within {self.limits.header_timeout} s",
        )

    def _close_with(self, status: int, reason: str, message: str) -> None:
        self._cancel_header_timer()
        if not self.transport.is_closing():
            self.transport.write(_error_bytes(status, reason, message))
            self.transport.close()


def guarded_protocol(
    limits: ConnectionLimits, base: type[GuardedH11Protocol] = GuardedH11Protocol
) -> type[GuardedH11Protocol]:
    """A subclass of ``base`` bound to ``limits`` (uvicorn instantiates the class)."""
    limits.validate()
    return type(base.__name__, (base,), {"limits": limits})
