"""Visitors written straight to their JSON bytes, and the event that carries them.

A dispatcher of ours sends a visitor as the bytes msgspec would make of its dict; this
module writes those very bytes without making the dict: the parts that depend only on
the datafile and the decision (campaign, experiment and variation ids, metadata, the
conversion event's id and key) are encoded once and cached, and each event adds its
uuid, timestamp, attributes and visitor id. ``tests/test_wire.py`` holds the two ways
byte for byte equal.

:class:`EncodedEvent` is a :class:`~xpevents.LogEvent` like any other: a dispatcher
that reads ``params`` gets the payload dict, decoded from the bytes on first reading
(so it is exactly what is sent). Our own dispatchers take :attr:`EncodedEvent.wire`
instead, as long as nobody has read or replaced ``params``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

import msgspec

from xpevents.events.model import DEFAULT_HEADERS, LogEvent
from xpevents.events.uuids import uuid4_parts
from xpevents.events.values import MAX_ATTRIBUTE_NUMBER

if TYPE_CHECKING:
    from xpevents.decide.datafile import EventDef, Experiment, Variation
    from xpevents.events.builder import EventBuilder

__all__ = [
    "ENCODE_ERRORS",
    "NO_TAGS",
    "AttributeCache",
    "EncodedEvent",
    "EventHead",
    "VisitorWriter",
    "encode",
]

encode: Final = msgspec.json.Encoder().encode
"""msgspec's compact JSON encoder (the one the dispatchers use)."""
_encode = encode
_decode = msgspec.json.Decoder().decode
ENCODE_ERRORS: Final = (TypeError, ValueError, OverflowError, msgspec.EncodeError)
"""What encoding a value msgspec cannot write raises (a lone surrogate, a huge int)."""

_UUID_TAIL: Final = b"%04x-%012x"
_IMPRESSION_STAMP: Final = b'","key":"campaign_activated","timestamp":'
_VISITOR_ID: Final = b',"visitor_id":'
_CONVERSION_ATTRIBUTES: Final = b'}]}],"attributes":'
_LOW_BITS: Final = (1 << 48) - 1
_SNAPSHOT_START: Final = b'{"snapshots":[{"events":[{"entity_id":'
_MAX_FRAGMENTS: Final = 4096
_MAX_NUMBER: Final = MAX_ATTRIBUTE_NUMBER
_time_ns: Final = time.time_ns
_stamp: tuple[int, bytes] = (0, b"0")
"""The last millisecond timestamp and its digits (events of one millisecond share them)."""


def _millis() -> bytes:
    """The digits of the current Unix time in milliseconds (the event's ``timestamp``)."""
    global _stamp
    ms = _time_ns() // 1_000_000
    stamp = _stamp
    if stamp[0] != ms:
        stamp = _stamp = (ms, b"%d" % ms)  # one tuple: a racing thread reads a matching pair
    return stamp[1]


NO_TAGS: Final[Any] = object()
"""``EncodedEvent(tags=...)`` when the conversion has no ``tags`` key."""


class EventHead:
    """What every event of one builder shares: its URL and project-level values."""

    __slots__ = ("url", "values")

    def __init__(self, url: str, values: tuple[str, str, str, str, str, bool]) -> None:
        self.url = url
        self.values = values

    def fields(self) -> dict[str, Any]:
        """A fresh payload dict without its ``visitors`` key (the envelope's values)."""
        account_id, project_id, revision, client_name, client_version, anonymize_ip = self.values
        return {
            "account_id": account_id,
            "project_id": project_id,
            "revision": revision,
            "client_name": client_name,
            "client_version": client_version,
            "anonymize_ip": anonymize_ip,
            "enrich_decisions": True,
        }


class EncodedEvent(LogEvent):
    """A one-visitor event API payload held as the visitor's JSON bytes.

    ``params`` is decoded from the bytes when first read (and then the dict is the
    event's payload: a change to it is what a dispatcher sends). Pickling or copying
    gives a plain :class:`~xpevents.LogEvent` with the same payload.
    """

    __slots__ = ("_headers", "_params", "_tags", "head", "wire")

    def __init__(self, head: EventHead, visitor: bytes, tags: Any = NO_TAGS) -> None:
        self.url = head.url
        self.http_verb = "POST"
        self._headers: dict[str, str] | None = None
        self.head = head
        self.wire: bytes | None = visitor
        """The visitor's bytes; ``None`` once ``params`` was read or replaced."""
        self._tags = tags
        self._params: Any = None

    @property
    def params(self) -> Any:
        """The payload dict (decoded from the visitor's bytes on first reading)."""
        params = self._params
        if params is None:
            params = self._params = self._decoded()
            self.wire = None
        return params

    @params.setter
    def params(self, value: Any) -> None:
        self._params = value
        self.wire = None

    @property
    def headers(self) -> dict[str, str]:
        """``{"Content-Type": "application/json"}`` (made on first reading)."""
        headers = self._headers
        if headers is None:
            headers = self._headers = dict(DEFAULT_HEADERS)
        return headers

    @headers.setter
    def headers(self, value: dict[str, str]) -> None:
        self._headers = value

    def _decoded(self) -> dict[str, Any]:
        wire = self.wire
        assert wire is not None
        visitor = _decode(wire)
        if self._tags is not NO_TAGS:  # the very object the dict path would hold
            visitor["snapshots"][0]["events"][0]["tags"] = self._tags
        params = self.head.fields()
        params["visitors"] = [visitor]  # as EventBuilder.payload makes it
        return params

    def __reduce__(self) -> tuple[Any, ...]:
        return (LogEvent, (self.url, self.params, self.http_verb, self.headers))


class AttributeCache:
    """Encoded ``attributes`` lists by the dict's items, for dicts of strings only.

    Most applications send a few attribute combinations again and again (country,
    plan, browser): their bytes are looked up (a tuple of the items and one hash)
    instead of written. Only all-string dicts are remembered: ``1``, ``1.0`` and
    ``True`` are equal as keys but not as JSON. At most ``size`` entries; when the
    ``size`` misses came with fewer than twice as many lookups (an attribute unique per
    user, or values that are not strings), it turns itself off for the rest of the
    writer's life (one datafile).
    """

    __slots__ = ("known", "lookups", "misses", "on", "size")

    def __init__(self, size: int = 1024) -> None:
        self.known: dict[tuple[tuple[Any, Any], ...], bytes] = {}
        self.size = size
        self.on = True
        self.lookups = 0
        self.misses = 0

    def remember(self, items: tuple[tuple[Any, Any], ...], encoded: bytes) -> None:
        """Keep ``encoded`` for ``items`` when every key and value is a ``str``."""
        self.misses += 1
        if self.misses >= self.size:  # every `size` misses: is the cache worth its lookups?
            if self.misses * 2 > self.lookups:
                self.on = False
                self.known.clear()
                return
            self.lookups = self.misses = 0
        if len(items) > 32:
            return
        for key, value in items:
            if type(key) is not str or type(value) is not str:
                return
        known = self.known
        if len(known) >= self.size:
            known.clear()
        known[items] = encoded


class VisitorWriter:
    """Writes one builder's impressions and conversions as visitor bytes.

    Every fragment comes from the builder's own dict for the same decision, encoded
    once, so the bytes are those of the dict path by construction.
    """

    __slots__ = (
        "_attribute_cache",
        "_attribute_starts",
        "_builder",
        "_conversions",
        "_empty_attributes",
        "_impressions",
        "_last_attributes",
    )

    def __init__(self, builder: EventBuilder) -> None:
        self._builder = builder
        self._impressions: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}
        self._conversions: dict[tuple[str, str], tuple[bytes, bytes]] = {}
        self._empty_attributes = _encode(builder.visitor_attributes(None))
        self._attribute_cache = AttributeCache()
        # '{"entity_id":ID,"key":KEY,"type":"custom","value":' of each datafile attribute
        self._attribute_starts: dict[str, bytes] = {}
        for key in builder.attribute_keys():
            item = _encode(builder.visitor_attributes({key: 0})[0])
            self._attribute_starts[key] = item[: -len(b"0}")]
        last = builder.visitor_attributes(None)  # the bot-filtering item, when there is one
        self._last_attributes = _encode(last)[1:-1] if last else b""

    def attributes(self, attributes: Any) -> bytes:
        """The visitor's ``attributes`` list, encoded.

        Datafile attributes with a plain value are written from cached fragments;
        anything else (``$opt_`` keys, unknown keys, other types, out-of-range
        numbers) goes through the builder's own filter. The bytes of dicts whose keys
        and values are all strings are remembered (:class:`AttributeCache`).
        """
        if not attributes:
            return self._empty_attributes
        if type(attributes) is not dict:
            return _encode(self._builder.visitor_attributes(attributes))
        cache = self._attribute_cache
        if cache.on:
            cache.lookups += 1
            try:
                items = tuple(attributes.items())
                encoded = cache.known.get(items)
            except Exception:  # an unhashable value (or one whose __hash__ raises)
                return self._dict_attributes(attributes)
            if encoded is None:
                encoded = self._dict_attributes(attributes)
                cache.remember(items, encoded)
            return encoded
        return self._dict_attributes(attributes)

    def _dict_attributes(self, attributes: dict[Any, Any]) -> bytes:
        starts = self._attribute_starts
        parts = []
        for key, value in attributes.items():
            start = starts.get(key)
            tv = type(value)
            if start is None or not (
                tv is str
                or tv is bool
                or ((tv is int or tv is float) and -_MAX_NUMBER <= value <= _MAX_NUMBER)
            ):
                return _encode(self._builder.visitor_attributes(attributes))
            parts.append(start + _encode(value) + b"}")
        if self._last_attributes:
            parts.append(self._last_attributes)
        return b"[" + b",".join(parts) + b"]"

    def impression(
        self,
        experiment: Experiment | None,
        variation: Variation | None,
        user_id: str,
        attributes: Any,
        flag_key: str,
        rule_key: str,
        rule_type: str,
        enabled: bool,
    ) -> bytes:
        """An impression visitor's bytes (see :meth:`EventBuilder.impression_visitor`).

        Raises:
            TypeError, ValueError, msgspec.EncodeError: a value cannot be encoded.
        """
        key = (
            experiment.id if experiment is not None else None,
            variation.id if variation is not None else None,
            flag_key,
            rule_key,
            rule_type,
            enabled,
        )
        fragments = self._impressions.get(key)
        if fragments is None:
            fragments = self._impression_fragments(key, experiment, variation)
        prefix, bits = uuid4_parts()
        return b"".join(
            (
                fragments[0],
                prefix,
                _UUID_TAIL % (0x8000 | (bits >> 48), bits & _LOW_BITS),
                _IMPRESSION_STAMP,
                _millis(),
                fragments[1],
                self.attributes(attributes),
                _VISITOR_ID,
                _encode(user_id),
                b"}",
            )
        )

    def conversion(self, event: EventDef, user_id: str, attributes: Any, extras: bytes) -> bytes:
        """A conversion visitor's bytes; ``extras`` are its encoded revenue/value/tags."""
        fragments = self._conversions.get((event.id, event.key))
        if fragments is None:
            start = _SNAPSHOT_START + _encode(event.id) + b',"uuid":"'
            fragments = (start, b'","key":' + _encode(event.key) + b',"timestamp":')
            self._remember(self._conversions, (event.id, event.key), fragments)
        prefix, bits = uuid4_parts()
        return b"".join(
            (
                fragments[0],
                prefix,
                _UUID_TAIL % (0x8000 | (bits >> 48), bits & _LOW_BITS),
                fragments[1],
                _millis(),
                extras,
                _CONVERSION_ATTRIBUTES,
                self.attributes(attributes),
                _VISITOR_ID,
                _encode(user_id),
                b"}",
            )
        )

    def _impression_fragments(
        self, key: tuple[Any, ...], experiment: Experiment | None, variation: Variation | None
    ) -> tuple[bytes, bytes]:
        _, _, flag_key, rule_key, rule_type, enabled = key
        visitor = self._builder.impression_visitor(
            experiment,
            variation,
            "",
            None,
            flag_key=flag_key,
            rule_key=rule_key,
            rule_type=rule_type,
            enabled=enabled,
        )
        snapshot = visitor["snapshots"][0]
        start = _SNAPSHOT_START + _encode(snapshot["events"][0]["entity_id"]) + b',"uuid":"'
        end = b'}],"decisions":' + _encode(snapshot["decisions"]) + b'}],"attributes":'
        fragments = (start, end)
        self._remember(self._impressions, key, fragments)
        return fragments

    @staticmethod
    def _remember(cache: dict[Any, tuple[bytes, bytes]], key: Any, value: Any) -> None:
        if len(cache) >= _MAX_FRAGMENTS:  # bounded by the datafile; a guard all the same
            cache.clear()
        cache[key] = value
