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
        self.depth = 0
        self.readings = 0
        """Depth readings taken so far (see :meth:`settled`)."""
        self._left: tuple[bytes | None, int] | None = None
        """The epoch last reset away from and the depth counted lost for it."""
        self._lock = threading.Lock()
        self._lost: Counter[str] = Counter()

    def start(self, client: redis.Redis) -> None:
        """Store an epoch unless one is there, and remember the one that is."""
        client.hsetnx(self.keys.meta, "epoch", secrets.token_hex(8))
        epoch = client.hget(self.keys.meta, "epoch")
        self.epoch = epoch if isinstance(epoch, bytes) else None

    @property
    def lost(self) -> Mapping[str, int]:
        """Visitors found lost, by reason (``redis_reset``)."""
        with self._lock:
            return MappingProxyType(dict(self._lost))

    def seen(self, client: redis.Redis, epoch: object, depth: int | None) -> None:
        """The epoch and depth read now (``depth`` after the operation that read it)."""
        current = epoch if isinstance(epoch, bytes) and epoch else None
        left = self._left
        if left is not None and current == left[0] and current != self.epoch:
            # A write that reached the vanished data just before it vanished, read
            # after the reset was counted: what it added is lost too.
            if depth is not None and depth > left[1]:
                with self._lock:
                    self._lost[REASON] += depth - left[1]
                self._left = (current, depth)
            return
        if current != self.epoch:
            self._reset(client, current)
        if depth is not None:
            self.depth = depth
            self.readings += 1

    def settled(self, count: int, since: int) -> None:
        """``count`` records left the spool (acked, dead-lettered).

        ``since`` is :attr:`readings` taken before the records were removed: when a
        depth was read since (an append that ran after the removal in Redis, or
        before it), the reading already tells, and subtracting again could make the
        depth, and so a loss counted at a reset, too small. Skipping it can only
        make the estimate larger.
        """
        if self.readings == since:
            self.depth = max(0, self.depth - count)

    def _reset(self, client: redis.Redis, current: bytes | None) -> None:
        lost = self.depth
        self._left = (self.epoch, lost)
        with self._lock:
            self._lost[REASON] += lost
        logger.warning(
            "Redis spool %s: the spool's data vanished (Redis restarted without persistence, "
            "or was flushed): about %d visitor(s) waiting in it are LOST, counted as "
            "lost['redis_reset']; turn on persistence (appendonly yes, appendfsync always) "
            "for a spool that survives a Redis restart",
            self.url,
            lost,
        )
        self.depth = 0
        if current is None:
            self.start(client)
        else:
            self.epoch = current
