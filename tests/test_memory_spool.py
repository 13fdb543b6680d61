"""MemorySpool: the Spool protocol, bounds and overflow policies."""

from __future__ import annotations

import threading
import time

import pytest

from xpevents import ConfigError
from xpevents.spool import Spool, open_spool
from xpevents.spool.memory import MemorySpool

ENV = b"B" + b"http://x/v1/events\n" + b'{"visitors":[]}'
OTHER = b"B" + b"http://y/v1/events\n" + b'{"visitors":[]}'


def test_open_spool_memory_and_protocol() -> None:
    spool = open_spool("memory://", max_events=5)
    assert isinstance(spool, MemorySpool) and isinstance(spool, Spool)
    assert spool.url == "memory://" and spool.durable is False


def test_claim_ack_retry_dead_letter_cycle() -> None:
    spool = MemorySpool()
    now = 1000.0
    spool.append([(ENV, b'{"a":1}'), (ENV, b'{"a":2}'), (OTHER, b'{"b":1}')], now=now)
    assert spool.next_due_at(now=now) == now
    records = spool.claim(max_records=10, max_bytes=1000, lease=30, now=now)
    assert [r.visitor for r in records] == [b'{"a":1}', b'{"a":2}']  # one envelope, oldest
    assert all(r.envelope == ENV and r.attempts == 0 for r in records)
    assert spool.stats(now=now).leased == 2
    spool.retry([records[0].id], attempts=1, first_attempt_at=now, next_attempt_at=now + 5)
    spool.ack([records[1].id])
    other = spool.claim(max_records=10, max_bytes=1000, lease=30, now=now)
    assert [r.visitor for r in other] == [b'{"b":1}']
    spool.dead_letter([other[0].id], reason="http_400", now=now)
    assert spool.claim(max_records=10, max_bytes=1000, lease=30, now=now) == []
    assert spool.next_due_at(now=now) == now + 5
    again = spool.claim(max_records=10, max_bytes=1000, lease=30, now=now + 5)
    assert again[0].attempts == 1 and again[0].first_attempt_at == now
    stats = spool.stats(now=now + 5)
    assert stats.depth == 1 and stats.dead_letters == {"http_400": 1}
    letters = spool.dead_letters()
    assert letters[0].reason == "http_400" and letters[0].visitor == b'{"b":1}'
    assert spool.replay_dead_letters(now=now) == 1
    assert spool.stats(now=now).dead_letters == {}
    spool.dead_letter(
        [r.id for r in spool.claim(max_records=1, max_bytes=10, lease=1, now=now + 6)],
        reason="x",
        now=now,
    )
    assert spool.purge_dead_letters() >= 1
    spool.close()


def test_max_bytes_and_single_large_record() -> None:
    spool = MemorySpool()
    spool.append([(ENV, b"x" * 600), (ENV, b"y" * 600)], now=1.0)
    first = spool.claim(max_records=10, max_bytes=1000, lease=30, now=1.0)
    assert len(first) == 1
    big = MemorySpool()
    big.append([(ENV, b"z" * 5000)], now=1.0)
    assert len(big.claim(max_records=10, max_bytes=1000, lease=30, now=1.0)) == 1


def test_expired_lease_makes_records_claimable_again() -> None:
    spool = MemorySpool()
    spool.append([(ENV, b"1")], now=0.0)
    assert spool.claim(max_records=5, max_bytes=100, lease=1, now=0.0)
    assert spool.claim(max_records=5, max_bytes=100, lease=1, now=0.5) == []
    assert len(spool.claim(max_records=5, max_bytes=100, lease=1, now=2.0)) == 1


def test_drop_newest_refuses_and_counts() -> None:
    spool = MemorySpool(max_events=3)
    for i in range(5):
        spool.append([(ENV, str(i).encode())], now=float(i))
    stats = spool.stats(now=10)
    assert stats.depth == 3 and stats.evicted == {"queue_full": 2}


def test_drop_oldest_evicts_oldest_not_in_flight() -> None:
    evicted: list[bytes] = []
    spool = MemorySpool(
        max_events=3, overflow="drop_oldest", on_evict=lambda v, r: evicted.append(v)
    )
    for i in range(3):
        spool.offer(ENV, [str(i).encode()], float(i))
    leased = spool.claim(max_records=1, max_bytes=100, lease=30, now=3.0)
    assert leased[0].visitor == b"0"
    spool.offer(ENV, [b"3"], 4.0)
    assert evicted == [b"1"]  # "0" is in flight, so "1" is the oldest evictable
    assert spool.depth == 3


def test_block_waits_for_room_then_times_out() -> None:
    spool = MemorySpool(max_events=1, overflow="block", block_timeout=0.2)
    assert spool.offer(ENV, [b"a"], 0.0)
    started = time.monotonic()
    assert spool.offer(ENV, [b"b"], 0.0) == 0
    assert 0.15 <= time.monotonic() - started < 1.0
    records = spool.claim(max_records=1, max_bytes=100, lease=30, now=0.0)
    threading.Timer(0.05, spool.ack, args=([records[0].id],)).start()
    assert spool.offer(ENV, [b"c"], 0.0) >= 1  # room appeared while blocked


def test_counts_and_pending_since() -> None:
    spool = MemorySpool()
    spool.offer(ENV, [b"a", b"b"], 1.0)
    spool.offer(ENV, [b"c"], 2.0)
    assert spool.counts() == (2, 3, 3)
    assert spool.pending_since(1.5) == 2
    assert len(spool.clear()) == 3 and spool.depth == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"max_events": 0}, {"overflow": "x"}, {"block_timeout": -1}, {"on_evict": 3}],
)
def test_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        MemorySpool(**kwargs)  # type: ignore[arg-type]
