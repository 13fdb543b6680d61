"""Reading an event API request body safely: size limits and bomb-proof gzip.

Shared by the two services that accept event API requests, the collector and the
relay. A body is refused before it is held in memory when its ``Content-Length`` is
over the limit, while it streams in when it grows past the limit, and while it is
inflated when a gzip body would decompress past the limit (a decompression bomb never
gets more than ``max_body`` bytes of memory).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable, Iterable
from typing import Final

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope

from xpevents.errors import BodyRejected

__all__ = [
    "BodyRejected",
    "GzipInflater",
    "first_header",
    "header",
    "read_asgi_body",
    "read_body",
    "whole_body",
]

_EMPTY: Final = b""


class GzipInflater:
    """Incremental gunzip that never holds more than ``limit`` decompressed bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.chunks: list[bytes] = []
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> None:
        """Inflate ``data``; raises :class:`BodyRejected` (413 or 400)."""
        try:
            while data:
                if self._z.eof:  # another gzip member follows (RFC 1952 allows several)
                    self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
                out = self._z.decompress(data, self.limit - self.size + 1)
                self.size += len(out)
                if self.size > self.limit:
                    raise BodyRejected(
                        413,
                        f"gzip body inflates to more than the limit ({self.limit} bytes)",
                        reason="too_large",
                    )
                self.chunks.append(out)
                data = self._z.unconsumed_tail or (self._z.unused_data if self._z.eof else _EMPTY)
        except zlib.error as exc:
            raise BodyRejected(400, f"invalid gzip body: {exc}", "$", "invalid_gzip") from None

    def finish(self) -> bytes:
        """The whole inflated body; raises :class:`BodyRejected` for a truncated stream."""
        if not self._z.eof:
            raise BodyRejected(400, "invalid gzip body: truncated stream", "$", "invalid_gzip")
        return _EMPTY.join(self.chunks)


async def read_body(
    request: Request,
    *,
    max_body: int,
    timeout: float | None = None,
    on_chunk: Callable[[int], object] | None = None,
) -> bytes:
    """The request body, decompressed, at most ``max_body`` bytes either way.

    Args:
        request: the Starlette request.
        max_body: largest body accepted, raw and after decompression.
        timeout: seconds the whole body may take to arrive (``None``: no limit), so a
            slow client cannot hold a worker forever.
        on_chunk: called with the size of each raw chunk received (for byte counters).

    Raises:
        BodyRejected: 413 (too large, raw or inflated), 400 (bad gzip or
            Content-Length), 415 (an encoding other than gzip), 408 (too slow).
        starlette.requests.ClientDisconnect: the client went away.
    """
    _check_length(request.headers.get("content-length"), max_body)
    inflater = _inflater(request.headers.get("content-encoding", "identity"), max_body)
    chunks: list[bytes] = []
    received = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                if not chunk:
                    continue
                received += len(chunk)
                if on_chunk is not None:
                    on_chunk(len(chunk))
                if received > max_body:
                    raise BodyRejected(
                        413, f"body exceeds the limit ({max_body} bytes)", reason="too_large"
                    )
                if inflater is None:
                    chunks.append(chunk)
                else:
                    inflater.feed(chunk)
    except TimeoutError:
        raise BodyRejected(
            408, f"body not received within {timeout} s", reason="read_timeout"
        ) from None
    if inflater is not None:
        return inflater.finish()
    return chunks[0] if len(chunks) == 1 else _EMPTY.join(chunks)


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case) in an ASGI ``scope``, as Starlette.

    What ``Request(scope).headers.get(name)`` answers, without building the request.
    """
    return first_header(scope["headers"], name)


def first_header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The first value of header ``name`` (lower case) in raw ``(name, value)`` pairs."""
    for key, value in headers:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def whole_body(headers: Iterable[tuple[bytes, bytes]], body: bytes, *, max_body: int) -> bytes:
    """:func:`read_asgi_body` for an identity-encoded body received whole (the relay's
    direct path, :mod:`xpevents.serving.direct`): the same checks, errors and answers.

    Raises:
        BodyRejected: as :func:`read_body` (a ``Content-Encoding`` other than identity
            is refused ``415`` here: gunzip a body with :func:`read_asgi_body`).
    """
    _check_length(first_header(headers, b"content-length"), max_body)
    if _inflater(first_header(headers, b"content-encoding") or "identity", max_body):
        raise BodyRejected(
            415, "whole_body reads identity bodies only", reason="unsupported_encoding"
        )
    if len(body) > max_body:
        raise BodyRejected(413, f"body exceeds the limit ({max_body} bytes)", reason="too_large")
    return body


async def read_asgi_body(
    scope: Scope,
    receive: Receive,
    *,
    max_body: int,
    timeout: float | None = None,
) -> bytes:
    """:func:`read_body` on a raw ASGI ``scope`` and ``receive`` (no Starlette request).

    The same limits, errors and answers, read from the ``http.request`` messages as
    ``Request.stream()`` reads them (the relay's ingest fast path).

    Raises:
        BodyRejected: as :func:`read_body`.
        starlette.requests.ClientDisconnect: the client went away.
    """
    _check_length(header(scope, b"content-length"), max_body)
    inflater = _inflater(header(scope, b"content-encoding") or "identity", max_body)
    chunks: list[bytes] = []
    received = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "http.disconnect":
                    raise ClientDisconnect()
                if kind != "http.request":
                    continue
                chunk = message.get("body", _EMPTY)
                if chunk:
                    received += len(chunk)
                    if received > max_body:
                        raise BodyRejected(
                            413, f"body exceeds the limit ({max_body} bytes)", reason="too_large"
                        )
                    if inflater is None:
                        chunks.append(chunk)
                    else:
                        inflater.feed(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise BodyRejected(
            408, f"body not received within {timeout} s", reason="read_timeout"
        ) from None
    if inflater is not None:
        return inflater.finish()
    return chunks[0] if len(chunks) == 1 else _EMPTY.join(chunks)


def _check_length(length: str | None, max_body: int) -> None:
    """Refuse a declared ``Content-Length`` over the limit before reading anything."""
    if length is None:
        return
    try:
        declared = int(length)
    except ValueError:
        raise BodyRejected(
            400, f"invalid Content-Length {length!r}", reason="invalid_content_length"
        ) from None
    if declared > max_body:
        raise BodyRejected(
            413, f"body of {declared} bytes exceeds the limit ({max_body})", reason="too_large"
        )


def _inflater(content_encoding: str, max_body: int) -> GzipInflater | None:
    """The gunzip a ``Content-Encoding`` asks for; ``None`` for an identity body."""
    encoding = content_encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return GzipInflater(max_body)
    if encoding not in ("identity", ""):
        raise BodyRejected(
            415,
            f"unsupported Content-Encoding {encoding!r} (use gzip)",
            reason="unsupported_encoding",
        )
    return None
