"""The spool's record format: envelopes, encoded visitors and request bodies.

A visitor is encoded once, at enqueue, and kept as bytes. Visitors whose payloads
share an *envelope* (the event's own URL, to which the dispatcher applies its
``endpoint`` when sending, plus every top-level key of the payload except
``visitors``: account_id, project_id, revision, client_name, client_version,
anonymize_ip, enrich_decisions and anything else present) may share one request, whose
body is ``prefix + b",".join(visitors) + suffix``: the visitors are wrapped, never
re-encoded or altered.

Envelope bytes (what a spool stores with each visitor) are self-describing, so a
durable spool can be replayed by another process:

* ``b"B" + url + b"\\n" + head``: batchable; ``head`` is the payload without its
  visitors, encoded with ``"visitors":[]`` as its last key.
* ``b"R" + json([method, url, headers])``: a payload that is not in the event API
  format; its single "visitor" is the whole encoded body, sent as-is and alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgspec

from xpevents.errors import PayloadError

API_MAX_BYTES: Final = 3_500_000
"""The event API's request size limit, in bytes."""

ENVELOPE_KEYS: Final = (
    "account_id",
    "project_id",
    "revision",
    "client_name",
    "client_version",
    "anonymize_ip",
    "enrich_decisions",
)
"""The project-level keys the official SDKs send, in their order (plus ``visitors``)."""

BATCH_TAG: Final = b"B"
RAW_TAG: Final = b"R"
_VISITORS_TAIL: Final = b'"visitors":[]}'

_encoder = msgspec.json.Encoder()
encode = _encoder.encode
"""msgspec's JSON encoder (compact; dict keys in insertion order)."""


def batch_envelope(url: str, params: dict[str, Any]) -> bytes:
    """The envelope of an event API payload sent to ``url``.

    Raises:
        TypeError, msgspec.EncodeError: a top-level value is not JSON-serialisable.
    """
    head = {key: value for key, value in params.items() if key != "visitors"}
    head["visitors"] = []
    return BATCH_TAG + url.encode() + b"\n" + encode(head)


def raw_envelope(method: str, url: str, headers: dict[str, str]) -> bytes:
    """The envelope of a payload that is sent as-is, alone."""
    return RAW_TAG + encode([method, url, headers])


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed envelope: where and how its visitors are sent.

    Attributes:
        batchable: True for event API payloads (visitors may share a request).
        method: ``"POST"`` (or ``"GET"`` for a raw GET event).
        url: the target URL.
        headers: headers of a raw event (batchable ones send JSON headers).
        prefix: body bytes before the joined visitors.
        suffix: body bytes after them.
    """

    batchable: bool
    method: str
    url: str
    headers: dict[str, str]
    prefix: bytes
    suffix: bytes

    def body(self, visitors: list[bytes]) -> bytes:
        """The request body carrying ``visitors`` (a raw envelope carries one)."""
        if not self.batchable:
            return visitors[0]
        return self.prefix + b",".join(visitors) + self.suffix

    def overhead(self) -> int:
        """Body bytes that are not visitors (without the separating commas)."""
        return len(self.prefix) + len(self.suffix)


def parse_envelope(envelope: bytes) -> Envelope:
    """Parse envelope bytes (see the module docstring).

    Raises:
        ValueError: the bytes are not an envelope.
    """
    tag = envelope[:1]
    if tag == BATCH_TAG:
        url, sep, head = envelope[1:].partition(b"\n")
        if not sep or not head.endswith(_VISITORS_TAIL):
            raise ValueError(f"malformed batch envelope {envelope[:80]!r}")
        return Envelope(
            True,
            "POST",
            url.decode(),
            {"Content-Type": "application/json"},
            head[:-2],
            b"]}",
        )
    if tag == RAW_TAG:
        try:
            method, url, headers = msgspec.json.decode(envelope[1:])
        except (msgspec.DecodeError, ValueError, TypeError):
            raise ValueError(f"malformed raw envelope {envelope[:80]!r}") from None
        return Envelope(False, str(method), str(url), dict(headers), b"", b"")
    raise ValueError(f"unknown envelope {envelope[:80]!r}")


def encode_json(params: Any) -> bytes:
    """Encode ``params`` as compact JSON bytes (one request body, sent as it is).

    Raises:
        PayloadError: ``params`` holds something JSON cannot represent (a set, an
            object, bytes, a non-string key...); the message says what.
    """
    try:
        return encode(params)
    except (TypeError, msgspec.EncodeError, ValueError, OverflowError) as exc:
        raise PayloadError(
            f"event params are not JSON-serialisable: {exc}; params must be made of "
            "dict (str keys), list, str, int, float, bool and None"
        ) from exc


def visitor_count(params: Any) -> int:
    """How many visitors an event API payload carries (1 when it is not one)."""
    if isinstance(params, dict):
        visitors = params.get("visitors")
        if isinstance(visitors, list) and visitors:
            return len(visitors)
    return 1
