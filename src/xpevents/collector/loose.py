"""The collector's lenient reading of a payload: what the Event API itself requires.

The real Event API is permissive: it answers 204 to a payload whose ids are ``null``,
whose numbers are strings or whose fields it does not know; an event needs a ``uuid``
and a ``timestamp``, nothing more. The collector reads payloads the same way by
default, so a test against it never refuses what production would take. The precise
schema (:mod:`xpevents.serving.schema`) is its strict mode (``--strict``), which
reports what an SDK got wrong as warnings, or refuses it (``--strict refuse``).

Values whose type the schema would refuse are kept as they came (``Any``); the store
turns them into column values with :func:`text` and :func:`number`, which read an
absent field (``msgspec.UNSET``) as ``null``.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from xpevents.errors import PayloadSchemaError
from xpevents.serving.schema import Timestamp, schema_error

__all__ = [
    "LooseDecision",
    "LooseEvent",
    "LoosePayload",
    "LooseSnapshot",
    "LooseVisitor",
    "decode_loose",
    "number",
    "text",
]


class _Loose(msgspec.Struct, kw_only=True):
    """Base: unknown fields ignored, every field but the Event API's own optional.

    An absent field is ``msgspec.UNSET`` (and stays absent when encoded), an explicit
    ``null`` is ``None``: what is stored says what the SDK sent.
    """


class LooseDecision(_Loose):
    """A decision as sent; any field may be ``null`` or of another type."""

    campaign_id: Any = msgspec.UNSET
    experiment_id: Any = msgspec.UNSET
    variation_id: Any = msgspec.UNSET
    is_campaign_holdback: Any = msgspec.UNSET
    metadata: Any = msgspec.UNSET


class LooseEvent(_Loose):
    """A snapshot event: the Event API needs a ``uuid`` and a ``timestamp`` (ms)."""

    uuid: str
    timestamp: Timestamp
    entity_id: Any = msgspec.UNSET
    key: Any = msgspec.UNSET
    revenue: Any = msgspec.UNSET
    value: Any = msgspec.UNSET
    tags: Any = msgspec.UNSET


class LooseSnapshot(_Loose):
    """Events observed together, and the decisions they report."""

    events: list[LooseEvent] = []
    decisions: list[LooseDecision] = []


class LooseVisitor(_Loose):
    """One visitor."""

    visitor_id: Any = msgspec.UNSET
    session_id: Any = msgspec.UNSET
    attributes: Any = msgspec.UNSET
    snapshots: list[LooseSnapshot] = []


class LoosePayload(_Loose):
    """A request body: project-level fields as sent, plus the visitors."""

    visitors: list[LooseVisitor]
    account_id: Any = msgspec.UNSET
    project_id: Any = msgspec.UNSET
    revision: Any = msgspec.UNSET
    client_name: Any = msgspec.UNSET
    client_version: Any = msgspec.UNSET
    anonymize_ip: Any = msgspec.UNSET
    enrich_decisions: Any = msgspec.UNSET


_DECODER: Final = msgspec.json.Decoder(LoosePayload)
_encode = msgspec.json.Encoder().encode


def decode_loose(body: bytes) -> LoosePayload:
    """Decode a body the shared ingest checks accepted; :class:`PayloadSchemaError` if an
    event lacks its ``uuid`` (a string) or ``timestamp`` (an integer), as the Event API.
    """
    try:
        return _DECODER.decode(body)
    except RecursionError:  # pragma: no cover - the ingest checks refused it already
        raise PayloadSchemaError("JSON nested too deeply", "$", "too_deep") from None
    except msgspec.MsgspecError as exc:
        error = schema_error(exc)
        raise PayloadSchemaError(error.detail, error.path, "invalid_event") from None


def text(value: Any) -> str | None:
    """A text column: strings as they are, ``null`` as NULL, anything else as JSON."""
    if value is None or value is msgspec.UNSET:
        return None
    if isinstance(value, str):
        return value
    return _encode(value).decode()


def number(value: Any) -> int | float | None:
    """A numeric column: an int or float (not a boolean) as it is, anything else NULL."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return float(value)
    return value
