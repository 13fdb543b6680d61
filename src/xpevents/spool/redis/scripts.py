"""The Redis spool's Lua scripts: every change to the spool's keys is one script, so it
is atomic.

How records move:

* ``append``: ``XADD`` per visitor; bounds enforced in the same script.
* ``claim``: due retries are re-added to the stream (``XADD`` + removal from the
  schedule); then expired leases are taken over with ``XAUTOCLAIM`` (min idle = the
  lease), then new entries read with ``XREADGROUP ... >``, both in chunks of 256 until
  the first candidate's envelope has ``max_bytes`` of visitors (or ``max_records``
  candidates are read: a backlog claim reads about one batch, not the queue's bound).
  The oldest candidate's envelope is chosen; candidates of other envelopes (or over
  the byte cap) are handed
  back at once (``XCLAIM ... TIME 1``: their idle time becomes huge, so the next
  ``XAUTOCLAIM`` takes them). The lease of a record is its time in the pending entries
  list: every sender sharing a stream should use the same ``lease``.
* ``ack``: ``XACK`` + ``XDEL``. The stream is trimmed only this way: an entry is
  deleted when it is delivered, moved to the schedule or the dead letters, or evicted
  by the bounds, never by ``MAXLEN``, so unacknowledged entries are never dropped.
* ``retry``: ``XACK`` + ``XDEL`` and the record (attempts, first_attempt_at) goes to
  the schedule until its next attempt time; it then re-enters the stream at its end
  with a new id.
* ``dead_letter``: ``XADD S:dead`` + ``XACK`` + ``XDEL``.

The scripts are the ``lua/*.lua`` files of this package (shipped as package data),
each run with ``lua/prelude.lua`` (the key names and shared helpers) in front of it.
"""

from __future__ import annotations

from importlib import resources

import redis
from redis.commands.core import Script

__all__ = ["SOURCES", "Scripts"]


_LUA = resources.files("xpevents.spool.redis") / "lua"


def _read(name: str) -> str:
    return (_LUA / f"{name}.lua").read_text("utf-8")


_PRELUDE = _read("prelude")

SOURCES = {
    name: f"{_PRELUDE}\n{_read(name)}"
    for name in ("append", "claim", "ack", "retry", "dead_letter", "move_dead", "make_due")
}
"""The text of each script, prelude included, by name."""


class Scripts:
    """The scripts, registered on one client (a forked child registers them on its own)."""

    __slots__ = ("ack", "append", "claim", "dead_letter", "make_due", "move_dead", "retry")

    def __init__(self, client: redis.Redis) -> None:
        self.append: Script = client.register_script(SOURCES["append"])
        self.claim: Script = client.register_script(SOURCES["claim"])
        self.ack: Script = client.register_script(SOURCES["ack"])
        self.retry: Script = client.register_script(SOURCES["retry"])
        self.dead_letter: Script = client.register_script(SOURCES["dead_letter"])
        self.move_dead: Script = client.register_script(SOURCES["move_dead"])
        self.make_due: Script = client.register_script(SOURCES["make_due"])
