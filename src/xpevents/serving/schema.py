"""Typed model of the Optimizely event API v1 payload (``POST /v1/events``).

The structs mirror what the official SDKs send, and are as lenient as the real API
on shape and as strict as it on types:

* unknown fields are ignored (new SDK versions add fields, e.g. ``cmab_uuid``);
* fields SDKs omit are optional: conversions carry no ``decisions``; ``revenue``,
  ``value`` and ``tags`` appear only when the event has them; ``variation_id`` may be
  ``null`` (a flag decision without a variation);
* values are never coerced: a timestamp sent as ``"1700000000000"`` is an error, not
  an int, and ``anonymize_ip`` must be a JSON boolean.

Decode bodies with :func:`decode_payload`; it raises :class:`PayloadSchemaError` (a
:class:`~xpevents.errors.PayloadError`) whose message names the JSON path of the first
error, e.g. ``$.visitors[0].snapshots[0].events[0].timestamp``.

All structs are keyword-only, so code reads the same whatever the field order.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec

from xpevents.errors import PayloadSchemaError

__all__ = [
    "ACTIVATE_EVENT_KEY",
    "Attribute",
    "AttributeValue",
    "Decision",
    "DecisionMetadata",
    "Payload",
    "PayloadSchemaError",
    "Snapshot",
    "SnapshotEvent",
    "Visitor",
    "decode_payload",
    "encode_payload",
]

ACTIVATE_EVENT_KEY: Final = "campaign_activated"
"""The ``key`` of the snapshot event that carries an impression (a decision)."""

Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
"""An integer that fits in a signed 64-bit column (revenue)."""

Timestamp = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
"""Milliseconds since the epoch, as an integer."""

AttributeValue = str | int | float | bool
"""The JSON types an attribute value may have (never ``null``)."""


class _Struct(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base: keyword-only fields; fields left at their default are not encoded."""


class Attribute(_Struct):
    """One visitor attribute (``type`` is ``"custom"`` for user attributes).

    SDKs also send reserved attributes such as ``$opt_bot_filtering`` this way.
    """

    entity_id: str
    key: str
    type: str
    value: AttributeValue


class DecisionMetadata(_Struct):
    """What a flag decision was about (sent by SDKs since flags/``decide`` exist).

    ``flag_key`` is ``""`` for a legacy ``activate`` impression; ``rule_type`` is
    ``"experiment"``, ``"feature-test"``, ``"rollout"``, ``"holdout"``, ...
    """

    flag_key: str
    rule_key: str
    rule_type: str
    variation_key: str
    enabled: bool
    cmab_uuid: str | None = None


class Decision(_Struct):
    """The decision an impression reports: which variation of which experiment.

    ``variation_id`` is ``None`` when the SDK decided no variation: SDKs always send
    the field, as ``null`` in that case, so it is required (and always re-encoded).
    """

    campaign_id: str
    experiment_id: str
    variation_id: str | None
    metadata: DecisionMetadata | None = None
    is_campaign_holdback: bool = False


class SnapshotEvent(_Struct):
    """One event: an impression (``key == "campaign_activated"``) or a conversion.

    For a conversion ``entity_id`` is the event's id in the datafile and ``key`` its
    key; ``revenue`` (integer, in cents) and ``value`` (number) are copied out of
    ``tags`` by the SDK when present. ``timestamp`` is in milliseconds since the epoch.
    The API de-duplicates events on ``(entity_id, uuid, timestamp)``.
    """

    entity_id: str
    uuid: str
    key: str
    timestamp: Timestamp
    revenue: Int64 | None = None
    value: float | None = None
    tags: dict[str, Any] | None = None


class Snapshot(_Struct):
    """Events observed together, with the decisions they report (impressions only)."""

    events: list[SnapshotEvent]
    decisions: list[Decision] = []


class Visitor(_Struct):
    """One visitor (the unit xpevents queues, batches and counts)."""

    visitor_id: str
    snapshots: list[Snapshot]
    attributes: list[Attribute] = []
    session_id: str | None = None


class Payload(_Struct):
    """A request body for the event API: project-level fields plus visitors.

    Payloads whose project-level fields are equal may be merged by concatenating
    their ``visitors``.
    """

    account_id: str
    visitors: list[Visitor]
    project_id: str | None = None
    revision: str | None = None
    client_name: str | None = None
    client_version: str | None = None
    anonymize_ip: bool | None = None
    enrich_decisions: bool | None = None


_DECODER: Final = msgspec.json.Decoder(Payload)
_ENCODER: Final = msgspec.json.Encoder()
_PATH_MARK: Final = " - at `"


def schema_error(exc: msgspec.MsgspecError) -> PayloadSchemaError:
    """Turn a msgspec decode/validation error into a :class:`PayloadSchemaError`.

    msgspec messages end in `` - at `$.path` `` when the error is below the root;
    the path is split off so that callers can report it on its own.
    """
    message = str(exc)
    detail, mark, rest = message.rpartition(_PATH_MARK)
    if mark and rest.endswith("`"):
        return PayloadSchemaError(detail, rest[:-1])
    if isinstance(exc, msgspec.ValidationError):  # a subclass of DecodeError
        return PayloadSchemaError(message)
    return PayloadSchemaError(f"not valid JSON: {message}")


def decode_payload(body: bytes | bytearray | memoryview | str) -> Payload:
    """Decode and validate one event API request body.

    Raises:
        PayloadSchemaError: the body is not JSON, or not an event API payload; the
            message and ``.path`` name the first offending JSON path.
    """
    try:
        return _DECODER.decode(body)
    except RecursionError:
        raise PayloadSchemaError(
            "JSON nested too deeply (the limit is about 1,000 levels)", "$", "too_deep"
        ) from None
    except msgspec.MsgspecError as exc:
        raise schema_error(exc) from None


def encode_payload(payload: Payload) -> bytes:
    """Serialise a payload to compact JSON; optional fields left at their default are omitted.

    This matches what the official SDKs send, but it is not a byte-for-byte round trip
    of any input (unknown fields are gone, ``"decisions": []`` is omitted): code that
    must forward a payload unchanged should forward the bytes it received.
    """
    return _ENCODER.encode(payload)
