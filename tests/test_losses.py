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
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from spool_redis_server import RedisServer
from xpevents import BatchDispatcher
from xpevents.spool.redis import RedisSpool, schema
from xpevents.spool.redis.losses import ResetWatch
from xpevents.spool.redis.schema import Keys
from xpevents.spool.sqlite import SqliteSpool

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


def test_a_late_answer_cannot_replace_a_newer_depth() -> None:
    """A ``stats()`` read before an append, whose answer reaches Python after the
    append's (two threads), must not lower the depth counted at the next reset: every
    reading carries Redis's sequence number (CI saw 9 lost, 8 counted without it)."""
    with RedisServer() as server:
        spool = RedisSpool.from_url(server.url + "?stream=late")
        client = redis.Redis.from_url(server.url)
        keys = Keys.of(spool.stream, spool.dead_stream)
        _append(spool, 7)
        stale, epoch, seq = schema.read_stats(client, keys, spool.group)
        assert stale.depth == 7
        _append(spool, 3)  # depth 10, read with a higher sequence number
        watch = ResetWatch(server.url, keys)
        watch.start(client)
        watch.seen(client, epoch, seq + 1, 10)
        watch.seen(client, epoch, seq, stale.depth)  # the late, older answer
        assert watch.depth == 10
        server.stop()
        server.start()
        watch.seen(client, b"", 1, 0)
        assert watch.lost == {"redis_reset": 10}
        # An answer from the vanished data that arrives after the reset was noticed
        # adds what it shows beyond the depth counted; an older one adds nothing.
        watch.seen(client, epoch, seq, 12)
        assert watch.lost == {"redis_reset": 10}
        watch.seen(client, epoch, seq + 2, 12)
        assert watch.lost == {"redis_reset": 12}
        client.close()
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
        # What Redis held is lost and counted. The count is the depth this process last
        # saw (an estimate: a commit racing the restart can be missed, seen 6 of 8 once in
        # about ten runs), so the test asks for a count within the bound, not exactness.
        assert set(stats.lost) == {"redis_reset"} and 1 <= stats.lost["redis_reset"] <= 8
        bd.close(0)


# -- SQLite, durability="interval": the window at a SIGKILL -------------------------------

_CHILD = """
import sys, time
from xpevents import BatchDispatcher, LogEvent
sys.path.insert(0, {tests!r})
from payloads import payload, visitor
bd = BatchDispatcher(
    spool={spool!r}, endpoint="http://127.0.0.1:9", flush_interval=600,
    durability="interval", commit_interval=600,
)
for _ in range({first}):
    bd.dispatch_event(LogEvent("https://logx.optimizely.com/v1/events", payload([visitor()])))
assert bd.spool.flush_buffer(30)
for _ in range({second}):
    bd.dispatch_event(LogEvent("https://logx.optimizely.com/v1/events", payload([visitor()])))
print("ready", flush=True)
time.sleep(600)
"""


def _killed_child(spool: str, first: int, second: int) -> None:
    code = _CHILD.format(tests=str(Path(__file__).parent), spool=spool, first=first, second=second)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)


def test_the_interval_window_lost_at_a_sigkill_is_counted_at_the_next_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "spool.db"
    _killed_child(f"sqlite:///{path}", first=40, second=25)
    assert list(tmp_path.glob("spool.db-accepted-*"))  # the dead process's mark
    with caplog.at_level(logging.WARNING, logger="xpevents.spool.sqlite"):
        spool = SqliteSpool(path)
    stats = spool.stats(now=time.time())
    assert stats.depth == 40 and stats.lost == {"interval_window": 25}
    assert len(_warnings(caplog)) == 1
    spool.close()
    assert not list(tmp_path.glob("spool.db-accepted-*"))
    # Counted once: the next open finds nothing new, and the count stays.
    with SqliteSpool(path) as again:
        assert again.stats(now=time.time()).lost == {"interval_window": 25}


def test_a_clean_close_in_interval_mode_leaves_no_mark_and_counts_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "spool.db"
    with BatchDispatcher(
        spool=f"sqlite:///{path}",
        endpoint=closed_port_url(),
        flush_interval=600,
        durability="interval",
    ) as bd:
        for _ in range(30):
            bd.dispatch_event(event())
        bd.close(5)
    assert not list(tmp_path.glob("spool.db-accepted-*"))
    with SqliteSpool(path) as spool:
        stats = spool.stats(now=time.time())
        assert stats.depth == 30 and stats.lost == {}


def test_the_relay_reports_a_redis_reset_in_its_metrics() -> None:
    from xpevents.relay.testing import run_relay

    from payloads import payload, visitor

    with (
        RedisServer() as server,
        run_relay(
            spool=server.url + "?stream=relay", upstream=closed_port_url(), shutdown_timeout=1
        ) as relay,
    ):
        for _ in range(5):
            assert relay.http.post("/v1/events", json=payload([visitor()])).status_code == 204
        deadline = time.monotonic() + 10
        while relay.metrics().get("xpevents_relay_spool_depth") != 5:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        server.stop()
        server.start()
        assert relay.http.post("/v1/events", json=payload([visitor()])).status_code == 204
        metrics = relay.metrics()
        assert metrics['xpevents_relay_lost_visitors_total{reason="redis_reset"}'] == 5
