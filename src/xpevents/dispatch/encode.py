"""JSON encoding of payloads (msgspec: compact, fast, no intermediate str)."""

from __future__ import annotations

from typing import Any

import msgspec

from xpevents.errors import PayloadError

_encoder = msgspec.json.Encoder()


def encode_json(params: Any) -> bytes:
    """Encode ``params`` as compact JSON bytes.

    Raises:
        PayloadError: ``params`` holds something JSON cannot represent (a set, an
            object, bytes, a non-string key...); the message says what.
    """
    try:
        return _encoder.encode(params)
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
