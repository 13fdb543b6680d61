"""Losses found after the fact: a Redis that came back without the spool's data.

A Redis restarted without persistence (or flushed) comes back empty: the stream, its
consumer group and every visitor that waited in it are gone, and nothing fails: the
next ``XADD`` creates a new stream. :class:`ResetWatch` notices. At open the spool
stores a random *epoch* in its meta hash (``HSETNX``) and remembers it; each append
script and each ``stats()`` read it back, and a missing or different epoch means the
data this process saw is gone. The visitors lost are estimated as the spool's depth at
its last reading before that (this process's last append or ``stats()``), counted as
``lost["redis_reset"]`` in ``stats()`` and logged once at WARNING per reset.

Each process that shares the stream notices the reset on its own, so the same loss
may be counted by several of them.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType

import redis

from xpevents.spool.redis.schema import Keys

__all__ = ["ResetWatch"]

logger = logging.getLogger("xpevents.spool.redis")

REASON = "redis_reset"


class ResetWatch:
    """The epoch of the spool's data as this process knows it, and what was lost."""

    def __init__(self, url: str, keys: Keys) -> None:
        self.url = url
        self.keys = keys
        self.epoch: bytes | None = None
        self.seq = 0
        """The sequence number of the latest reading of the current epoch's data."""
        self.depth = 0
        """The depth at that reading."""
        self._left: tuple[bytes | None, int, int] | None = None
        """The epoch last reset away from, its latest sequence number and the depth
        counted lost for it."""
        self._lock = threading.Lock()
        self._lost: Counter[str] = Counter()

    def start(self, client: redis.Redis) -> None:
        """Store an epoch unless one is there, and remember the one that is."""
        client.hsetnx(self.keys.meta, "epoch", secrets.token_hex(8))
        epoch = client.hget(self.keys.meta, "epoch")
        with self._lock:
            self.epoch = epoch if isinstance(epoch, bytes) else None

    @property
    def lost(self) -> Mapping[str, int]:
        """Visitors found lost, by reason (``redis_reset``)."""
        with self._lock:
            return MappingProxyType(dict(self._lost))

    def seen(self, client: redis.Redis, epoch: object, seq: int | None, depth: int | None) -> None:
        """A reading: the epoch, the sequence number and the depth read in one atomic
        step (``seq`` and ``depth`` None when only the epoch was read)."""
        current = epoch if isinstance(epoch, bytes) and epoch else None
        with self._lock:
            left = self._left
            if left is not None and current is not None and current == left[0] != self.epoch:
                # An answer from the vanished data, read after the reset was counted:
                # a later state of it than the one counted may hold more.
                if seq is not None and depth is not None and seq > left[1]:
                    if depth > left[2]:
                        self._lost[REASON] += depth - left[2]
                    self._left = (current, seq, max(depth, left[2]))
                return
            lost = None
            if current != self.epoch:
                lost = self.depth
                self._left = (self.epoch, self.seq, lost)
                self._lost[REASON] += lost
                self.epoch = current
                self.seq = 0
                self.depth = 0
            if seq is not None and depth is not None and seq > self.seq:
                self.seq = seq
                self.depth = depth
        if lost is not None:
            logger.warning(
                "Redis spool %s: the spool's data vanished (Redis restarted without "
                "persistence, or was flushed): about %d visitor(s) waiting in it are LOST, "
                "counted as lost['redis_reset']; turn on persistence (appendonly yes, "
                "appendfsync always) for a spool that survives a Redis restart",
                self.url,
                lost,
            )
            if current is None:
                self.start(client)
