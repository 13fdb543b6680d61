"""From one ``POST /v1/events`` request to spool entries, without altering a visitor.

A body is read by :func:`xpevents.serving.body.read_body` (raw and decompressed size
limits, gzip that cannot inflate past the limit), checked only for what forwarding
needs (:func:`xpevents.serving.ingest.split_body`: JSON that decodes everywhere, an
object with a list of visitor objects; the relay is a forwarder, not a judge: ``null``
ids, unknown fields and the like are the Event API's business), then split: each
visitor's JSON text is taken verbatim from the body (``msgspec.Raw``), so what the SDK
sent is what the upstream receives. The project-level fields become the *envelope*, built
exactly as :class:`~xpevents.BatchDispatcher` builds its own
(:func:`xpevents.spool.envelope.batch_envelope`), with the URL set to the relay's
configured upstream for the path: the relay is not an open proxy, and a URL inside a
payload is never followed.
"""

from __future__ import annotations

from xpevents.serving.ingest import split_body
from xpevents.spool.envelope import batch_envelope

__all__ = ["split_payload"]


def split_payload(body: bytes, url: str) -> tuple[bytes, list[bytes]]:
    """Validate ``body`` and return ``(envelope, visitors)`` for the spool.

    ``envelope`` carries ``url`` (the configured upstream) and the payload's
    project-level fields, each value as the client sent it; ``visitors`` are the
    visitors' JSON texts, byte for byte as in ``body``.

    Raises:
        PayloadSchemaError: the body cannot be forwarded (``.path`` names the first
            offending JSON path, ``.reason`` the counter it is refused under).
    """
    top, visitors = split_body(body)
    return batch_envelope(url, top), [bytes(visitor) for visitor in visitors]
