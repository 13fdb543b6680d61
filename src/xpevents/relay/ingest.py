"""From one ``POST /v1/events`` request to spool entries, without altering a visitor.

A body is read by :func:`xpevents.serving.body.read_body` (raw and decompressed size
limits, gzip that cannot inflate past the limit), validated against the event API
schema (:func:`xpevents.serving.schema.decode_payload`), then split: each visitor's
JSON text is taken verbatim from the body (``msgspec.Raw``), so what the SDK sent is
what the upstream receives. The project-level fields become the *envelope*, built
exactly as :class:`~xpevents.BatchDispatcher` builds its own
(:func:`xpevents.spool.envelope.batch_envelope`), with the URL set to the relay's
configured upstream for the path: the relay is not an open proxy, and a URL inside a
payload is never followed.
"""

from __future__ import annotations

from typing import Final

import msgspec

from xpevents.serving.schema import decode_payload
from xpevents.spool.envelope import batch_envelope

__all__ = ["split_payload"]

_TOP: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_VISITORS: Final = msgspec.json.Decoder(list[msgspec.Raw])


def split_payload(body: bytes, url: str) -> tuple[bytes, list[bytes]]:
    """Validate ``body`` and return ``(envelope, visitors)`` for the spool.

    ``envelope`` carries ``url`` (the configured upstream) and the payload's
    project-level fields, each value as the client sent it; ``visitors`` are the
    visitors' JSON texts, byte for byte as in ``body``.

    Raises:
        PayloadSchemaError: not JSON, or not an event API payload (``.path`` names
            the first offending JSON path).
    """
    decode_payload(body)  # PayloadSchemaError naming the first offending JSON path
    top = _TOP.decode(body)  # cannot fail: the body was just validated
    visitors = _VISITORS.decode(top.pop("visitors"))
    return batch_envelope(url, top), [bytes(visitor) for visitor in visitors]
