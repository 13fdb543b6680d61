"""``xpevents spool replay --dead-letter --to URL``: dead letters back, to a new URL.

A dead letter keeps the envelope it was spooled with, URL included: replayed as it is,
a dispatcher with no ``endpoint`` sends it where it failed before (the relay itself
always sends to its configured upstream, see :mod:`xpevents.relay.routing`).
:func:`replay_to` re-appends each dead letter under an envelope whose URL is ``to``
(a URL with a path: every event goes there; a base URL ``http://host:port``: US events
to ``/v1/events``, EU events to ``/eu/v1/events``), then deletes the dead letters it
re-appended. The visitors are never altered.
"""

from __future__ import annotations

import urllib.parse

from xpevents.errors import ConfigError
from xpevents.spool.base import DeadLetter, Spool
from xpevents.spool.envelope import BATCH_TAG, parse_envelope, raw_envelope

__all__ = ["replay_to", "retarget"]

_ROUNDS = 5
_ALL = 10**9


def _target(to: str, old_url: str) -> str:
    parts = urllib.parse.urlsplit(to)
    if parts.path not in ("", "/"):
        return to
    old = urllib.parse.urlsplit(old_url)
    eu = (old.hostname or "").lower().startswith("eu.") or old.path.startswith("/eu/")
    return to.rstrip("/") + ("/eu/v1/events" if eu else "/v1/events")


def retarget(envelope: bytes, to: str) -> bytes:
    """``envelope`` with its URL replaced by ``to`` (mapped by region for a base URL)."""
    parsed = parse_envelope(envelope)
    url = _target(to, parsed.url)
    if envelope[:1] == BATCH_TAG:
        head = envelope[1:].partition(b"\n")[2]
        return BATCH_TAG + url.encode() + b"\n" + head
    return raw_envelope(parsed.method, url, dict(parsed.headers))


def replay_to(spool: Spool, to: str, *, reason: str | None, now: float) -> int:
    """Re-append the dead letters (with ``reason``, or all) under ``to``; delete them.

    Dead letters that arrive while this runs are re-appended too (up to five rounds),
    so that deleting by reason only ever deletes what was re-appended; stop the
    processes that use the spool first all the same.

    Raises:
        ConfigError: ``to`` is not an absolute http(s) URL.
        SpoolError: the spool failed (nothing is deleted then).
    """
    parts = urllib.parse.urlsplit(to)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--to {to!r}: expected an absolute http:// or https:// URL")
    done: set[int | str] = set()
    for _ in range(_ROUNDS):
        fresh = [d for d in _letters(spool, reason) if d.id not in done]
        if not fresh:
            spool.purge_dead_letters(reason=reason)
            return len(done)
        spool.append([(retarget(d.envelope, to), d.visitor) for d in fresh], now=now)
        done.update(d.id for d in fresh)
    raise ConfigError(
        "dead letters keep arriving while replaying: stop the relays and dispatchers "
        f"using {spool.url} first ({len(done)} re-appended, none deleted)"
    )


def _letters(spool: Spool, reason: str | None) -> list[DeadLetter]:
    return [d for d in spool.dead_letters(limit=_ALL) if reason is None or d.reason == reason]
