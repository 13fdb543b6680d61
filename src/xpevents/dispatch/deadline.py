"""A total deadline per upstream request, for the synchronous HTTP stack.

httpx's timeouts bound each network operation: an upstream that trickles its answer one
byte a second never lets a read time out, and holds the sender for as long as it
likes. :func:`deadline` sets, for the calling thread (a context variable), the moment
the request must be over; the network streams of a transport passed through
:func:`enforce_deadlines` clamp every connect, read and write to what is left of it, and
fail with a timeout once it has passed. Outside :func:`deadline` they behave exactly as
httpx's own.

httpx gives no public way to choose a transport's network backend, so
:func:`enforce_deadlines` wraps the one httpcore's pool holds; when that is not possible
(another transport, a future httpx), it says so and changes nothing. The asyncio driver
needs none of this: it bounds each request with ``asyncio.timeout``.

Given a :class:`~xpevents.dispatch.resolve.HostCache`, the backend also resolves each
host through it before connecting, so the deadline bounds DNS as well (a lookup that
hangs is waited for only until the deadline); TLS still verifies the host name.
"""

from __future__ import annotations

import contextvars
import logging
import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

from xpevents.dispatch.resolve import HostCache

__all__ = ["deadline", "deadline_transport", "enforce_deadlines"]

logger = logging.getLogger("xpevents.dispatch")

_DEADLINE: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar(
    "xpevents_request_deadline", default=None
)
"""(monotonic deadline, total seconds) of the request being made in this context."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Within the block, requests through an enforcing transport end after ``seconds``."""
    token = _DEADLINE.set((time.monotonic() + seconds, seconds))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _clamp(timeout: float | None, error: type[httpcore.TimeoutException]) -> float | None:
    """``timeout`` cut to what is left of the deadline; raises ``error`` once it passed."""
    current = _DEADLINE.get()
    if current is None:
        return timeout
    end, total = current
    remaining = end - time.monotonic()
    if remaining <= 0:
        raise error(f"the request's total deadline of {total:g} s passed")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend, resolver: HostCache | None = None) -> None:
        self._inner = inner
        self._resolver = resolver

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        if self._resolver is None:
            clamped = _clamp(timeout, httpcore.ConnectTimeout)
            stream = self._inner.connect_tcp(host, port, clamped, local_address, socket_options)
            return _DeadlineStream(stream)
        try:
            addresses = self._resolver.addresses(
                host, port, _clamp(timeout, httpcore.ConnectTimeout)
            )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from None
        failure: httpcore.ConnectError | None = None
        for address in addresses:  # in the resolver's order, like socket.create_connection
            clamped = _clamp(timeout, httpcore.ConnectTimeout)
            try:
                stream = self._inner.connect_tcp(
                    address, port, clamped, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
                continue
            return _DeadlineStream(stream)
        self._resolver.forget(host, port)  # none answered: look it up afresh next time
        raise failure or httpcore.ConnectError(f"no address to connect to for {host!r}")

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _enforce_on_transport(transport: object, resolver: HostCache | None = None) -> bool:
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, _DeadlineBackend):
        backend._resolver = resolver or backend._resolver
        return True
    if not isinstance(backend, httpcore.NetworkBackend):
        return False
    pool._network_backend = _DeadlineBackend(backend, resolver)  # type: ignore[union-attr]
    return True


def enforce_deadlines(client: httpx.Client, *, resolver: HostCache | None = None) -> bool:
    """Make ``client``'s HTTP transports honour :func:`deadline`; False if one cannot.

    With ``resolver``, every new connection (to the host, or to a proxy) resolves its
    host name through that cache, so the deadline bounds DNS too.
    """
    transports = [getattr(client, "_transport", None)]
    transports += [t for t in getattr(client, "_mounts", {}).values() if t is not None]
    enforced = all(_enforce_on_transport(t, resolver) for t in transports)
    if not enforced:
        logger.warning(
            "cannot bound each request by a total deadline with this httpx version or "
            "transport: the timeout applies to each network operation only"
        )
    return enforced


def deadline_transport(*, resolver: HostCache | None = None, **options: Any) -> httpx.HTTPTransport:
    """An ``httpx.HTTPTransport(**options)`` that honours :func:`deadline`.

    With ``resolver``, it resolves host names through that cache (see
    :func:`enforce_deadlines`).
    """
    transport = httpx.HTTPTransport(**options)
    if not _enforce_on_transport(transport, resolver):
        logger.warning("cannot bound each request by a total deadline with this httpx version")
    return transport
