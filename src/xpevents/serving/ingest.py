"""What must be valid at ingest, before anything reaches a spool or a store.

The relay is a forwarder, not a judge: it refuses only what it cannot forward or merge.
:func:`split_body` is that rule, shared by the relay and the collector:

* the body is JSON (valid UTF-8 everywhere, no lone surrogate escape, numbers that fit
  a double, nesting within the parser's depth limit): a visitor that does not decode
  would make every batch it is merged into fail upstream, holding other clients'
  events hostage, so it is refused here, with the path of the visitor at fault;
* the document is an object with a ``visitors`` list whose items are objects (what
  the batcher splits and re-wraps);
* the project-level fields (the batching key, stored with every visitor) fit in
  :data:`MAX_ENVELOPE_BYTES`.

Everything else is the Event API's business: ``null`` ids, numbers as strings, unknown
fields, an absent ``account_id``. The visitors come back as ``msgspec.Raw``: their JSON
text exactly as received.

Every refusal is a :class:`~xpevents.errors.PayloadSchemaError` whose ``path`` names
where, ``detail`` what, and ``reason`` the counter it is counted under.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

from xpevents.errors import PayloadSchemaError

__all__ = ["MAX_ENVELOPE_BYTES", "REASONS", "decode_json", "split_body"]

MAX_ENVELOPE_BYTES: Final = 65_536
"""Largest project-level part of a payload (everything but ``visitors``), in bytes."""

REASONS: Final = (
    "not_json",
    "too_deep",
    "invalid_string",
    "not_object",
    "no_visitors",
    "visitor_not_object",
    "envelope_too_large",
)
"""Every ``reason`` :func:`split_body` refuses with."""

_ANY: Final = msgspec.json.Decoder()
_TOP: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_RAW_LIST: Final = msgspec.json.Decoder(list[msgspec.Raw])
_STRING_ERRORS: Final = ("UTF-8", "utf-16", "surrogate")
# msgspec reports a lone high surrogate escape ("\ud800" not followed by a low one) as
# "Input data was truncated"; this finds one so the answer says what it is.
_LONE_HIGH: Final = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])")
_LONE: Final = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def decode_json(body: bytes | memoryview, path: str = "$") -> Any:
    """``body`` decoded as generic JSON; :class:`PayloadSchemaError` when it is not JSON.

    A document nested deeper than the decoder's recursion limit (about 1,000 levels)
    is refused with ``reason="too_deep"`` instead of raising ``RecursionError``.
    """
    try:
        return _ANY.decode(body)
    except RecursionError:
        raise PayloadSchemaError(
            "JSON nested too deeply (the limit is about 1,000 levels)", path, "too_deep"
        ) from None
    except msgspec.MsgspecError as exc:
        raise _not_json(str(exc), body, path) from None


def _not_json(message: str, body: bytes | memoryview, path: str) -> PayloadSchemaError:
    if "truncated" in message and _LONE_HIGH.search(body):
        message = "lone UTF-16 surrogate escape (\\ud800-\\udbff without its low half)"
    if any(mark in message for mark in _STRING_ERRORS):
        return PayloadSchemaError(f"invalid string: {message}", path, "invalid_string")
    return PayloadSchemaError(f"not valid JSON: {message}", path, "not_json")


def split_body(body: bytes) -> tuple[dict[str, msgspec.Raw], list[msgspec.Raw]]:
    """Check ``body`` and split it into ``(project_fields, visitors)``.

    ``project_fields`` maps each top-level key but ``visitors`` to its JSON text;
    ``visitors`` are the visitors' JSON texts, byte for byte as in ``body``.

    Raises:
        PayloadSchemaError: ``body`` cannot be forwarded (see the module docstring);
            ``.path`` names the first offending JSON path, ``.reason`` the counter.
    """
    try:
        document = decode_json(body)
    except PayloadSchemaError as exc:
        raise _locate(body, exc) from None
    if not isinstance(document, dict):
        raise PayloadSchemaError(
            f"expected a JSON object, got {_kind(document)}", "$", "not_object"
        )
    visitors = document.get("visitors")
    if not isinstance(visitors, list):
        got = "nothing" if "visitors" not in document else _kind(visitors)
        raise PayloadSchemaError(
            f"expected a list of visitors, got {got}", "$.visitors", "no_visitors"
        )
    for i, visitor in enumerate(visitors):
        if not isinstance(visitor, dict):
            raise PayloadSchemaError(
                f"expected a visitor object, got {_kind(visitor)}",
                f"$.visitors[{i}]",
                "visitor_not_object",
            )
    top = _TOP.decode(body)  # cannot fail: the body decoded above
    raw_visitors = _RAW_LIST.decode(top.pop("visitors"))
    size = sum(len(key) + len(value) for key, value in top.items())
    if size > MAX_ENVELOPE_BYTES:
        raise PayloadSchemaError(
            f"project-level fields take {size} bytes (at most {MAX_ENVELOPE_BYTES})",
            "$",
            "envelope_too_large",
        )
    return top, raw_visitors


def _locate(body: bytes, error: PayloadSchemaError) -> PayloadSchemaError:
    """A more precise path for ``error``: the top-level key or visitor that fails.

    The generic decoder names a byte, not a path; the structure is re-read with
    lazily decoded values (``msgspec.Raw``, over a copy whose lone surrogate escapes
    are blanked out, as the lazy reader refuses those too) and each part is decoded
    on its own, from the original bytes.
    """
    patched = _LONE.sub(lambda _: b"\\u005f", body)
    try:
        top = _TOP.decode(patched)
        parts: list[tuple[str, bytes]] = []
        for key, value in top.items():
            if key == "visitors" and bytes(value).startswith(b"["):
                parts.extend(
                    (f"$.visitors[{i}]", bytes(v)) for i, v in enumerate(_RAW_LIST.decode(value))
                )
            else:
                parts.append((f"$.{key}", bytes(value)))
    except (msgspec.MsgspecError, RecursionError):
        return error
    offset = 0
    for path, text in parts:
        offset = patched.find(text, offset)
        try:
            decode_json(body[offset : offset + len(text)], path)
        except PayloadSchemaError as exc:
            return exc
        offset += len(text)
    return error


def _retag(error: PayloadSchemaError, path: str) -> PayloadSchemaError:
    return PayloadSchemaError(error.detail, path, error.reason)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
