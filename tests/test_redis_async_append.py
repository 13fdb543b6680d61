"""Appending to a Redis spool from an event loop (xpevents.spool.redis.aio) and the relay's
committer using it: the real Redis on 127.0.0.1:6379 (database 9, a stream per test)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from spool_redis_server import free_port
from xpevents.errors import SpoolError
from xpevents.relay.committer import Committer
from xpevents.relay.writer import SpoolWriter
from xpevents.spool.redis import RedisSpool

BASE = "redis://127.0.0.1:6379/9"
ENVELOPE = b"B" + b"http://x/v1/events\n" + b'{"visitors":[]}'


@pytest.fixture
def spool() -> Iterator[RedisSpool]:
    name = f"test:{uuid.uuid4().hex}"
    opened = RedisSpool.from_url(f"{BASE}?stream={name}")
    yield opened
    opened.close()
    client = redis.Redis(port=6379, db=9)
    keys = client.keys(f"{name}*")
    if keys:
        client.delete(*keys)
    client.close()


def visitors(prefix: str, n: int) -> list[bytes]:
    return [f'{{"visitor_id":"{prefix}-{i}"}}'.encode() for i in range(n)]


def claimed(spool: RedisSpool) -> list[tuple[bytes, bytes]]:
    records = spool.claim(max_records=10_000, max_bytes=1 << 30, lease=60, now=time.time())
    return [(record.envelope, record.visitor) for record in records]


def test_an_async_append_stores_what_a_blocking_one_stores(spool: RedisSpool) -> None:
    assert spool.appender is not None
    entries = [(ENVELOPE, v) for v in visitors("a", 5)]

    async def main() -> None:
        await spool.appender.append(entries, now=time.time())  # type: ignore[union-attr]
        await spool.appender.append([], now=time.time())  # type: ignore[union-attr]
        await spool.appender.aclose()  # type: ignore[union-attr]

    asyncio.run(main())
    spool.append([(ENVELOPE, v) for v in visitors("b", 2)], now=time.time())
    assert spool.stats(now=time.time()).depth == 7
    assert claimed(spool) == entries + [(ENVELOPE, v) for v in visitors("b", 2)]


def test_an_async_append_recreates_a_vanished_group(spool: RedisSpool) -> None:
    client = redis.Redis(port=6379, db=9)
    client.xgroup_destroy(spool.stream, spool.group)
    client.close()

    async def main() -> None:
        await spool.appender.append([(ENVELOPE, b'{"v":1}')], now=time.time())  # type: ignore[union-attr]
        await spool.appender.aclose()  # type: ignore[union-attr]

    asyncio.run(main())
    assert claimed(spool) == [(ENVELOPE, b'{"v":1}')]


def test_redis_gone_is_a_spool_error_and_nothing_is_counted(spool: RedisSpool) -> None:
    port = free_port()
    down = RedisSpool(
        redis.Redis(port=6379, db=9),
        stream=spool.stream,
        url=f"redis://127.0.0.1:{port}/9",
        async_client_factory=lambda: AsyncRedis(port=port, socket_connect_timeout=1),
    )
    writer = SpoolWriter(down, max_events=10, max_bytes=1 << 20)

    async def main() -> list[BaseException | None]:
        return await writer.write_many_async([(ENVELOPE, visitors("c", 3))], now=time.time())

    [outcome] = asyncio.run(main())
    assert isinstance(outcome, SpoolError) and "append failed" in str(outcome)
    # the reservation was released: all 10 still fit
    assert writer.write_many([(ENVELOPE, visitors("d", 10))], now=time.time()) == [None]


def test_the_committer_appends_on_the_loop_one_round_trip_at_a_time(spool: RedisSpool) -> None:
    writer = SpoolWriter(spool, max_events=100_000, max_bytes=1 << 30)
    assert writer.appends_async
    committer = Committer(writer)
    appends = []
    original = spool.appender.append  # type: ignore[union-attr]

    async def counted(entries: list[tuple[bytes, bytes]], *, now: float) -> None:
        appends.append(len(entries))
        await original(entries, now=now)

    spool.appender.append = counted  # type: ignore[method-assign,union-attr]

    async def main() -> None:
        writes = [committer.write(ENVELOPE, visitors(f"r{k}", 2)) for k in range(200)]
        await asyncio.wait_for(asyncio.gather(*writes), timeout=60)
        await committer.aclose()

    asyncio.run(main())
    assert spool.stats(now=time.time()).depth == 400
    assert sum(appends) == 400
    assert len(appends) < 200  # grouped while a round trip was in flight
    committer.close()
