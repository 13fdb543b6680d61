"""Appending to a Redis spool from an event loop: the relay's ingest, without a thread.

A relay request's visitors are committed before its ``204``. With a blocking client,
the append's round trip to redis-server either blocks the event loop (no other request
is served meanwhile) or runs in a thread, which hands the GIL back and forth with the
loop at every socket call. :class:`AsyncAppender` sends the same ``append`` script
(one ``EVALSHA``, bounds enforced in it) with redis-py's asyncio client, so the loop
serves other requests while redis-server answers. The reading it returns goes to the
spool's reset watch as a blocking append's does; a consumer group that vanished
(``FLUSHDB``, a restart without persistence) is recreated with the blocking client (a
rare event) and the append sent again. One asyncio client per process and event loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import redis
from redis.asyncio import Redis as AsyncRedis
from redis.commands.core import AsyncScript

from xpevents.spool.redis.scripts import SOURCES

if TYPE_CHECKING:
    from xpevents.spool.redis.spool import RedisSpool

__all__ = ["AsyncAppender"]

_Current = tuple[tuple[int, asyncio.AbstractEventLoop], AsyncRedis, AsyncScript]
"""(pid, loop) the client belongs to, the client, and its ``append`` script."""


class AsyncAppender:
    """``await append(entries, now=...)``: :meth:`RedisSpool.append` on the running loop.

    Raises (from :meth:`append`):
        SpoolError: Redis is unreachable or refused the write.
    """

    def __init__(self, spool: RedisSpool, factory: Callable[[], AsyncRedis]) -> None:
        self._spool = spool
        self._factory = factory
        self._current: _Current | None = None

    async def append(self, entries: Sequence[tuple[bytes, bytes]], *, now: float) -> None:
        """Append ``entries`` as :meth:`RedisSpool.append` does, awaiting the round trip."""
        if not entries:
            return
        spool = self._spool
        args = spool._append_args(entries, now)
        client, script = self._client()
        with spool._guard("append"):
            try:
                reading = await script(keys=list(spool._keys), args=args, client=client)
            except redis.ResponseError as error:
                spool._recreate_group(spool._client(), error, warn=True)
                reading = await script(keys=list(spool._keys), args=args, client=client)
        spool._seen(reading)

    def _client(self) -> tuple[AsyncRedis, AsyncScript]:
        owner = (os.getpid(), asyncio.get_running_loop())
        current = self._current
        if current is None or current[0] != owner:
            client = self._factory()
            current = self._current = (owner, client, client.register_script(SOURCES["append"]))
        return current[1], current[2]

    async def aclose(self) -> None:
        """Close the client of this process and loop, if one was opened. Idempotent."""
        current, self._current = self._current, None
        if current is not None and current[0] == (os.getpid(), asyncio.get_running_loop()):
            await current[1].aclose()
