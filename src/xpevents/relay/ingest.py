"""From one ``POST /v1/events`` request to spool entries, without altering a visitor.

A body is read with the collector's limits (raw and decompressed size, gzip that can
not inflate past the limit), validated against the event API schema
(:func:`xpevents.events.schema.decode_payload`), then split: each visitor's JSON text
is taken verbatim from the body (``msgspec.Raw``), so what the SDK sent is what the
upstream receives. The project-level fields become the *envelope*, built exactly as
:class:`~xpevents.BatchDispatcher` builds its own (:func:`batching.batch_envelope`),
with the URL set to the relay's configured upstream for the path: the relay is not an
open proxy, and a URL inside a payload is never followed.
"""

from __future__ import annotations

import asyncio
from typing import Final

import msgspec
from starlette.requests import Request

# The collector's body-limit and gzip helpers are private there; see docs/relay.md.
from xpevents.collector.app import _GzipInflater, _Rejected
from xpevents.dispatch.batching import batch_envelope
from xpevents.events.schema import PayloadSchemaError, decode_payload, schema_error

__all__ = ["Rejected", "read_body", "split_payload"]

Rejected = _Rejected
"""A request answered with ``status`` and ``{"error": ..., "path": ...}``."""

_EMPTY: Final = b""
_TOP: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_VISITORS: Final = msgspec.json.Decoder(list[msgspec.Raw])


async def read_body(request: Request, *, max_body: int, timeout: float) -> bytes:
    """The request body, decompressed, at most ``max_body`` bytes either way.

    Raises:
        Rejected: 413 (too large, raw or inflated), 400 (bad gzip or Content-Length),
            415 (an encoding other than gzip), 408 (the body took over ``timeout``
            seconds to arrive: a slow client does not hold a worker forever).
        starlette.requests.ClientDisconnect: the client went away.
    """
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise Rejected(400, f"invalid Content-Length {length!r}") from None
        if declared > max_body:
            raise Rejected(413, f"body of {declared} bytes exceeds the limit ({max_body})")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    inflater: _GzipInflater | None = None
    if encoding in ("gzip", "x-gzip"):
        inflater = _GzipInflater(max_body)
    elif encoding not in ("identity", ""):
        raise Rejected(415, f"unsupported Content-Encoding {encoding!r} (use gzip)")
    chunks: list[bytes] = []
    received = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                if not chunk:
                    continue
                received += len(chunk)
                if received > max_body:
                    raise Rejected(413, f"body exceeds the limit ({max_body} bytes)")
                if inflater is None:
                    chunks.append(chunk)
                else:
                    inflater.feed(chunk)
    except TimeoutError:
        raise Rejected(408, f"body not received within {timeout} s") from None
    if inflater is not None:
        return inflater.finish()
    return chunks[0] if len(chunks) == 1 else _EMPTY.join(chunks)


def split_payload(body: bytes, url: str) -> tuple[bytes, list[bytes]]:
    """Validate ``body`` and return ``(envelope, visitors)`` for the spool.

    ``envelope`` carries ``url`` (the configured upstream) and the payload's
    project-level fields, each value as the client sent it; ``visitors`` are the
    visitors' JSON texts, byte for byte as in ``body``.

    Raises:
        PayloadSchemaError: not JSON, or not an event API payload (``.path`` names
            the first offending JSON path).
    """
    decode_payload(body)
    try:
        top = _TOP.decode(body)
        visitors = _VISITORS.decode(top.pop("visitors"))
    except (msgspec.MsgspecError, KeyError) as exc:  # pragma: no cover - validated above
        raise (
            schema_error(exc)
            if isinstance(exc, msgspec.MsgspecError)
            else PayloadSchemaError("missing visitors")
        ) from None
    return batch_envelope(url, top), [bytes(visitor) for visitor in visitors]
