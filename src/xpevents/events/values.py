"""The official SDK's value rules: ids, revenue, numeric value, tags and attributes.

Each function reproduces one normalisation of optimizely-sdk 5.7.0 (see the rules in
:mod:`xpevents.events.builder`), so that a payload built here equals the official one
key for key. They are pure and run at load time (ids) or once per event (the rest).
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "MAX_ATTRIBUTE_NUMBER",
    "get_numeric_value",
    "get_revenue_value",
    "normalize_campaign_id",
    "normalize_variation_id",
    "plain_attribute",
    "tags_payload",
]

logger = logging.getLogger("xpevents.events.builder")

MAX_ATTRIBUTE_NUMBER: Final = 2**53
"""Largest magnitude of a numeric attribute: beyond it a double no longer holds every integer."""

_CLEANED_KEYS: Final = frozenset({"revenue", "value", "tags", "decisions"})
_SIMPLE_TAG_TYPES: Final = frozenset({str, int, float, bool})


def normalize_campaign_id(campaign_id: object, experiment_id: object) -> str:
    """The layer id when it is a non-empty string, else the experiment id, else ``""``."""
    if isinstance(campaign_id, str) and campaign_id:
        return campaign_id
    if isinstance(experiment_id, str) and experiment_id:
        return experiment_id
    return ""


def normalize_variation_id(variation_id: object) -> str | None:
    """The variation id when it is a non-empty string of ASCII digits, else ``None``."""
    if isinstance(variation_id, str) and variation_id.isascii() and variation_id.isdigit():
        return variation_id
    return None


def get_revenue_value(event_tags: object) -> int | None:
    """The ``revenue`` tag when it is an integer (bools excluded), else ``None``."""
    if not isinstance(event_tags, dict):
        return None
    raw = event_tags.get("revenue")
    if type(raw) is int:
        return raw
    if raw is None or isinstance(raw, bool) or not isinstance(raw, numbers.Integral):
        return None
    return int(raw)


def get_numeric_value(event_tags: object) -> float | None:
    """``float(tags["value"])`` when the tag is a number or numeric string and finite."""
    if not isinstance(event_tags, dict) or "value" not in event_tags:
        return None
    raw = event_tags["value"]
    tv = type(raw)
    if tv is float:
        return None if raw != raw or raw in (math.inf, -math.inf) else raw
    if tv is int:
        try:
            return float(raw)
        except OverflowError:
            return None
    if isinstance(raw, bool) or not isinstance(raw, numbers.Integral | float | str):
        return None
    try:
        number = float(raw)
    except (ValueError, OverflowError):
        return None
    if math.isnan(number) or math.isinf(number):
        return None
    return number


def _clean_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return {k: v for k, v in pairs if not (v is None and k in _CLEANED_KEYS)}


def _json_default(obj: Any) -> Any:
    try:
        return obj.__dict__
    except AttributeError:
        return str(obj)


def tags_payload(event_tags: Any) -> Any:
    """The tags as the official SDK sends them (after its JSON encode/decode round trip).

    A flat dict of scalars survives the round trip unchanged (bar the cleaned keys), so
    it is copied instead of encoded and decoded.
    """
    if type(event_tags) is dict:
        simple = True
        drop = False
        for k, v in event_tags.items():
            if type(k) is not str:
                simple = False
                break
            if v is None:
                if k in _CLEANED_KEYS:
                    drop = True
            elif type(v) not in _SIMPLE_TAG_TYPES:
                simple = False
                break
        if simple:
            if drop:
                return {
                    k: v for k, v in event_tags.items() if v is not None or k not in _CLEANED_KEYS
                }
            return dict(event_tags)
    try:
        return json.loads(
            json.dumps(event_tags, default=_json_default), object_pairs_hook=_clean_pairs
        )
    except (TypeError, ValueError) as exc:
        logger.error(
            "Event tags %r cannot be encoded as JSON (%s); sending them as strings.",
            event_tags,
            exc,
        )
        return (
            {str(k): str(v) for k, v in dict(event_tags).items()}
            if isinstance(event_tags, Mapping)
            else None
        )


def _plain_value(value: object) -> str | bool | int | float | None:
    """``value`` as a plain ``str``/``bool``/``int``/``float``, ``None`` when not sent."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, numbers.Integral):
        number = int(value)
        return number if abs(number) <= MAX_ATTRIBUTE_NUMBER else None
    if isinstance(value, float):
        real = float(value)
        return real if real == real and abs(real) <= MAX_ATTRIBUTE_NUMBER else None
    return None


def plain_attribute(key: object, value: object) -> tuple[str, str | bool | int | float] | None:
    """One attribute as plain types, or ``None`` when the official SDK leaves it out.

    The builder's own loop handles a ``str`` key with a ``str``, ``bool``, ``int`` or
    ``float`` value; this is the rest: subclasses (``str`` enums, ``IntEnum``...) are
    sent as their base type, and other keys or values are left out.
    """
    plain = _plain_value(value)
    if plain is None or not isinstance(key, str):
        return None
    return str.__str__(key), plain
