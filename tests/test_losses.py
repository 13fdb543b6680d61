"""Losses found after the fact are counted and reported (issue 15, item 9).

* A Redis restarted without persistence comes back empty: the spool notices (the epoch
  it stored is gone), counts what waited in it as ``lost["redis_reset"]`` and logs one
  WARNING; with persistence nothing is lost and nothing is counted.
* SQLite with ``durability="interval"``: a SIGKILL loses the last uncommitted group;
  the next open compares the high-water mark of what the dead process accepted with
  what it committed, and counts the difference as ``lost["interval_window"]``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from spool_redis_server import RedisServer
from xpevents import BatchDispatcher
from xpevents.spool.redis import RedisSpool

from payloads import event
from servers import closed_port_url

ENVELOPE = b'{"url":"https://logx.optimizely.com/v1/events"}'


def _append(spool: RedisSpool, n: int) -> None:
    spool.append([(ENVELOPE, b'{"n":%d}' % i) for i in range(n)], now=time.time())


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "LOST" in r.getMessage()
    ]


def test_a_redis_restart_without_persistence_is_counted_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with RedisServer() as server:
        spool = RedisSpool.from_url(server.url + "?stream=loss")
        _append(spool, 30)
        (record, *_) = spool.claim(max_records=5, max_bytes=1 << 20, lease=30, now=time.time())
        spool.ack([record.id])
        assert spool.stats(now=time.time()).depth == 29
        server.stop()
        server.start()
        with caplog.at_level(logging.WARNING, logger="xpevents.spool.redis"):
            _append(spool, 3)
            _append(spool, 2)
            stats = spool.stats(now=time.time())
        assert stats.lost == {"redis_reset": 29}
        assert stats.depth == 5
        assert len(_warnings(caplog)) == 1 and "29 visitor(s)" in _warnings(caplog)[0]
        spool.close()


def test_a_reset_noticed_by_stats_or_a_missing_group() -> None:
    with RedisServer() as server:
        spool = RedisSpool.from_url(server.url + "?stream=loss2")
        _append(spool, 7)
        assert spool.stats(now=time.time()).depth == 7
        server.stop()
        server.start()
        assert spool.stats(now=time.time()).lost == {"redis_reset": 7}
        assert spool.claim(max_records=5, max_bytes=1 << 20, lease=30, now=time.time()) == []
        assert spool.stats(now=time.time()).lost == {"redis_reset": 7}  # counted once
        spool.close()


def test_a_persistent_redis_restart_loses_nothing(tmp_path: Path) -> None:
    with RedisServer(directory=str(tmp_path)) as server:
        spool = RedisSpool.from_url(server.url + "?stream=kept")
        _append(spool, 12)
        server.stop()
        server.start()
        _append(spool, 1)
        stats = spool.stats(now=time.time())
        assert stats.lost == {} and stats.depth == 13
        spool.close()


def test_batch_dispatcher_reports_a_redis_reset() -> None:
    with (
        RedisServer() as server,
        BatchDispatcher(
            spool=server.url + "?stream=bd", endpoint=closed_port_url(), flush_interval=60
        ) as bd,
    ):
        for _ in range(4):
            bd.dispatch_event(event(n=2))
        assert bd.stats().spool_depth == 8
        server.stop()
        server.start()
        bd.dispatch_event(event())
        stats = bd.stats()
        assert stats.lost == {"redis_reset": 8}
        bd.close(0)
