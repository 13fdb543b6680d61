"""The Spool contract, one suite run against every backend: memory, SQLite, Redis.

SQLite runs on real files in ``tmp_path``; Redis on the server at 127.0.0.1:6379
(database 9, a unique stream per test, deleted afterwards). Times are real wall-clock
times because Redis measures leases with the server's clock.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from xpevents import BatchDispatcher, LogEvent, RetryPolicy
from xpevents.spool.base import DeadLetter, Spool, SpoolRecord

from servers import Reply, scripted_server

REDIS_URL = "redis://127.0.0.1:6379/9"

Factory = Callable[..., Spool]

BACKENDS = ["memory", "sqlite", "redis"]


def bounds(max_events: int | None, max_bytes: int | None, max_age: float | None) -> dict[str, Any]:
    """The durable backends' bound options that were given."""
    given = {
        "max_spool_events": max_events,
        "max_spool_bytes": max_bytes,
        "max_event_age": max_age,
    }
    return {name: value for name, value in given.items() if value}


@pytest.fixture(params=BACKENDS)
def make_spool(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """A factory: ``make_spool(max_events=..., max_bytes=..., max_age=...)``."""
    backend: str = request.param
    opened: list[Spool] = []
    streams: list[str] = []

    def make(
        *,
        max_events: int | None = None,
        max_bytes: int | None = None,
        max_age: float | None = None,
        reopen: bool = False,
    ) -> Spool:
        spool: Spool
        if backend == "memory":
            from xpevents.spool.memory import MemorySpool

            if max_bytes is not None or max_age is not None or reopen:
                pytest.skip("the memory spool has no byte or age bound and does not persist")
            spool = MemorySpool(max_events or 100_000, "drop_oldest")
        elif backend == "sqlite":
            from xpevents.spool.sqlite import SqliteSpool

            spool = SqliteSpool(tmp_path / "spool.db", **bounds(max_events, max_bytes, max_age))
        else:
            from xpevents.spool.redis import RedisSpool

            if not streams:
                streams.append(f"test:{uuid.uuid4().hex}")
            spool = RedisSpool.from_url(
                f"{REDIS_URL}?stream={streams[0]}&consumer=test-{len(opened)}",
                **bounds(max_events, max_bytes, max_age),
            )
        opened.append(spool)
        return spool

    yield make
    for spool in opened:
        if backend == "redis" and spool is opened[-1]:
            from xpevents.spool.redis import RedisSpool

            assert isinstance(spool, RedisSpool)
            spool.delete_all()
        spool.close()


def visitors(n: int, tag: str = "v", size: int = 0) -> list[bytes]:
    pad = "x" * size
    return [f'{{"{tag}":{i},"pad":"{pad}"}}'.encode() for i in range(n)]


def claim_all(spool: Spool, *, lease: float = 30.0, now: float | None = None) -> list[SpoolRecord]:
    out: list[SpoolRecord] = []
    while True:
        batch = spool.claim(
            max_records=1000, max_bytes=1 << 30, lease=lease, now=now or time.time()
        )
        if not batch:
            return out
        out.extend(batch)


def test_is_a_spool(make_spool: Factory) -> None:
    spool = make_spool()
    assert isinstance(spool, Spool)
    assert isinstance(spool.url, str)


def test_append_claim_ack(make_spool: Factory) -> None:
    spool = make_spool()
    now = time.time()
    assert spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=now) == []
    assert spool.next_due_at(now=now) is None
    payload = visitors(5)
    spool.append([(b"env", v) for v in payload], now=now)
    assert spool.stats(now=now).depth == 5
    assert spool.stats(now=now).bytes == sum(len(v) for v in payload)
    assert spool.next_due_at(now=time.time()) is not None
    records = spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=time.time())
    assert [r.visitor for r in records] == payload  # oldest first, unchanged
    assert {r.envelope for r in records} == {b"env"}
    assert all(r.attempts == 0 and r.first_attempt_at is None for r in records)
    assert len({r.id for r in records}) == 5
    assert spool.stats(now=time.time()).leased == 5
    # leased records are not claimable again
    assert spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=time.time()) == []
    spool.ack([r.id for r in records[:2]])
    assert spool.stats(now=time.time()).depth == 3
    spool.ack([r.id for r in records])
    spool.ack([r.id for r in records])  # idempotent
    stats = spool.stats(now=time.time())
    assert stats.depth == 0
    assert stats.bytes == 0
    assert stats.oldest_enqueued_at is None


def test_claim_caps_records_and_bytes(make_spool: Factory) -> None:
    spool = make_spool()
    payload = visitors(10, size=100)
    spool.append([(b"env", v) for v in payload], now=time.time())
    first = spool.claim(max_records=3, max_bytes=1 << 20, lease=30, now=time.time())
    assert [r.visitor for r in first] == payload[:3]
    size = len(payload[0])
    second = spool.claim(max_records=100, max_bytes=2 * size + 1, lease=30, now=time.time())
    assert [r.visitor for r in second] == payload[3:5]
    # a record larger than max_bytes is returned alone
    third = spool.claim(max_records=100, max_bytes=10, lease=30, now=time.time())
    assert [r.visitor for r in third] == payload[5:6]
    rest = claim_all(spool)
    assert [r.visitor for r in rest] == payload[6:]


def test_claim_returns_one_envelope(make_spool: Factory) -> None:
    spool = make_spool()
    entries = [(b"A" if i % 2 == 0 else b"B", f'{{"i":{i}}}'.encode()) for i in range(40)]
    spool.append(entries, now=time.time())
    seen: list[tuple[bytes, bytes]] = []
    for _ in range(20):
        batch = spool.claim(max_records=7, max_bytes=1 << 20, lease=30, now=time.time())
        if not batch:
            break
        assert len({r.envelope for r in batch}) == 1
        seen.extend((r.envelope, r.visitor) for r in batch)
        spool.ack([r.id for r in batch])
    assert sorted(seen) == sorted(entries)
    assert spool.stats(now=time.time()).depth == 0


def test_lease_expires_and_record_is_reclaimed(make_spool: Factory) -> None:
    spool = make_spool()
    spool.append([(b"env", b'{"a":1}')], now=time.time())
    first = spool.claim(max_records=10, max_bytes=1 << 20, lease=0.3, now=time.time())
    assert len(first) == 1
    assert spool.claim(max_records=10, max_bytes=1 << 20, lease=0.3, now=time.time()) == []
    time.sleep(0.3)
    # The memory spool sweeps expired leases at most once a second: poll. Senders that
    # share a spool use the same lease (on Redis a record is reclaimable once it has
    # been idle for the reclaiming sender's lease).
    deadline = time.monotonic() + 1.5
    again: list[SpoolRecord] = []
    while not again and time.monotonic() < deadline:
        again = spool.claim(max_records=10, max_bytes=1 << 20, lease=0.3, now=time.time())
        time.sleep(0.05)
    assert [r.visitor for r in again] == [b'{"a":1}']
    spool.ack([again[0].id])
    assert spool.stats(now=time.time()).depth == 0


def test_retry_schedule_lives_in_the_spool(make_spool: Factory) -> None:
    spool = make_spool()
    now = time.time()
    spool.append([(b"env", v) for v in visitors(3)], now=now)
    records = spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=now)
    spool.retry(
        [r.id for r in records], attempts=2, first_attempt_at=now - 5, next_attempt_at=now + 0.4
    )
    assert spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=time.time()) == []
    due = spool.next_due_at(now=time.time())
    assert due is not None and abs(due - (now + 0.4)) < 0.05
    assert spool.stats(now=time.time()).depth == 3
    time.sleep(0.45)
    # Due now: at its scheduled time or later, never in the future (a stalled box may
    # take longer than 0.2 s between the sleep and the reading).
    due = spool.next_due_at(now=time.time())
    assert due is not None and now + 0.35 <= due <= time.time()
    again = spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=time.time())
    assert sorted(r.visitor for r in again) == sorted(visitors(3))
    assert all(r.attempts == 2 for r in again)
    assert all(r.first_attempt_at == pytest.approx(now - 5) for r in again)
    assert all(r.enqueued_at == pytest.approx(now, abs=0.01) for r in again)


def test_dead_letters_replay_and_purge(make_spool: Factory) -> None:
    spool = make_spool()
    now = time.time()
    spool.append([(b"env", v) for v in visitors(5)], now=now)
    records = spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=now)
    spool.dead_letter([r.id for r in records[:2]], reason="http_400", now=now)
    spool.dead_letter([r.id for r in records[2:3]], reason="too_large", now=now)
    stats = spool.stats(now=now)
    assert dict(stats.dead_letters) == {"http_400": 2, "too_large": 1}
    assert stats.depth == 2
    dead = spool.dead_letters(limit=10)
    assert [(d.visitor, d.reason, d.envelope) for d in dead] == [
        (records[0].visitor, "http_400", b"env"),
        (records[1].visitor, "http_400", b"env"),
        (records[2].visitor, "too_large", b"env"),
    ]
    assert all(d.failed_at == pytest.approx(now) for d in dead)
    assert spool.replay_dead_letters(reason="http_400", now=time.time()) == 2
    assert dict(spool.stats(now=time.time()).dead_letters) == {"too_large": 1}
    replayed = claim_all(spool)
    assert sorted(r.visitor for r in replayed) == sorted(r.visitor for r in records[:2])
    assert spool.purge_dead_letters(reason="nope") == 0
    assert spool.purge_dead_letters() == 1
    assert dict(spool.stats(now=time.time()).dead_letters) == {}
    assert spool.dead_letters() == []


def test_dead_letter_carries_the_attempts_made(make_spool: Factory) -> None:
    spool = make_spool()
    now = time.time()
    spool.append([(b"env", v) for v in visitors(3)], now=now)
    first, second, third = spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=now)
    # sent once and refused (a 404): one attempt made, though none was stored yet
    spool.dead_letter([first.id], reason="http_404", now=now, attempts=1)
    # never sent (too large): the stored count, 0, is kept
    spool.dead_letter([second.id], reason="too_large", now=now)
    # retried once, then given up at the second attempt
    spool.retry([third.id], attempts=1, first_attempt_at=now, next_attempt_at=now)
    (again,) = spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=time.time())
    spool.dead_letter([again.id], reason="max_attempts", now=now, attempts=2)
    spool.append([(b"env", b'{"kept":1}')], now=now)
    (kept,) = spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=time.time())
    spool.retry([kept.id], attempts=3, first_attempt_at=now, next_attempt_at=now)
    (kept,) = spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=time.time())
    spool.dead_letter([kept.id], reason="invalid_envelope", now=now)
    by_reason = {d.reason: d.attempts for d in spool.dead_letters(limit=10)}
    assert by_reason == {"http_404": 1, "too_large": 0, "max_attempts": 2, "invalid_envelope": 3}


def _log_event(i: int) -> LogEvent:
    visitor = {
        "visitor_id": f"u{i}",
        "attributes": [],
        "snapshots": [
            {"events": [{"entity_id": "1", "uuid": f"id-{i}", "key": "k", "timestamp": 1}]}
        ],
    }
    params = {
        "account_id": "1",
        "project_id": "2",
        "revision": "3",
        "client_name": "t",
        "client_version": "0",
        "anonymize_ip": False,
        "enrich_decisions": True,
        "visitors": [visitor],
    }
    return LogEvent("https://logx.optimizely.com/v1/events", params)


def _dead_after_sending(spool: Spool, replies: list[Reply], max_attempts: int) -> list[DeadLetter]:
    """Send two visitors through a real BatchDispatcher on ``spool`` to a real HTTP
    server answering ``replies``; return the spool's dead letters once both are in."""
    retry = RetryPolicy(max_attempts=max_attempts, backoff_base=0.01, backoff_max=0.02)
    with scripted_server(*replies) as server:
        server.default = replies[-1]
        dispatcher = BatchDispatcher(
            endpoint=server.base_url,
            spool=spool,
            retry=retry,
            flush_interval=0.01,
            atexit_timeout=None,
        )
        try:
            for i in range(2):
                dispatcher.dispatch_event(_log_event(i))
            deadline = time.monotonic() + 20
            while sum(spool.stats(now=time.time()).dead_letters.values()) < 2:
                assert time.monotonic() < deadline, spool.stats(now=time.time())
                time.sleep(0.02)
            return spool.dead_letters(limit=10)  # (closing the dispatcher closes a durable one)
        finally:
            dispatcher.close(timeout=5)


def test_a_visitor_refused_at_its_first_send_has_one_attempt(make_spool: Factory) -> None:
    dead = _dead_after_sending(make_spool(), [Reply(404)], max_attempts=3)
    make_spool()  # an open handle for the clean-up (the dispatcher closed the first)
    assert [(d.reason, d.attempts) for d in dead] == [("http_404", 1), ("http_404", 1)]


def test_a_visitor_given_up_after_retries_has_every_attempt(make_spool: Factory) -> None:
    dead = _dead_after_sending(make_spool(), [Reply(503)], max_attempts=2)
    make_spool()  # an open handle for the clean-up (the dispatcher closed the first)
    assert [d.attempts for d in dead] == [2, 2]
    assert {d.reason for d in dead} == {"attempts_exhausted"}


def test_max_events_evicts_oldest_and_counts(make_spool: Factory) -> None:
    spool = make_spool(max_events=10)
    payload = visitors(15)
    for v in payload:
        spool.append([(b"env", v)], now=time.time())
    stats = spool.stats(now=time.time())
    assert stats.depth == 10
    assert sum(stats.evicted.values()) == 5
    kept = claim_all(spool)
    assert [r.visitor for r in kept] == payload[5:]


def test_max_bytes_evicts_oldest_and_counts(make_spool: Factory) -> None:
    payload = visitors(10, size=100)
    size = len(payload[0])
    spool = make_spool(max_bytes=size * 4)
    spool.append([(b"env", v) for v in payload], now=time.time())
    stats = spool.stats(now=time.time())
    assert stats.depth == 4
    assert stats.bytes == 4 * size
    assert dict(stats.evicted) == {"max_spool_bytes": 6}
    assert [r.visitor for r in claim_all(spool)] == payload[6:]


def test_max_age_evicts_old_records(make_spool: Factory) -> None:
    spool = make_spool(max_age=60.0)
    now = time.time()
    spool.append([(b"env", v) for v in visitors(3, "old")], now=now - 120)
    time.sleep(1.05)  # the age check runs at most once a second
    spool.append([(b"env", v) for v in visitors(2, "new")], now=time.time())
    stats = spool.stats(now=time.time())
    assert dict(stats.evicted) == {"max_event_age": 3}
    assert [r.visitor for r in claim_all(spool)] == visitors(2, "new")


def test_stats_oldest_and_bytes(make_spool: Factory) -> None:
    spool = make_spool()
    t0 = time.time()
    spool.append([(b"env", b"12345")], now=t0 - 10)
    spool.append([(b"env", b"123")], now=t0)
    stats = spool.stats(now=t0)
    assert stats.depth == 2
    assert stats.bytes == 8
    assert stats.oldest_enqueued_at == pytest.approx(t0 - 10)
    assert stats.leased == 0


def test_random_operations_lose_nothing(make_spool: Factory) -> None:
    """A random mix of append/claim/ack/retry/dead-letter: every visitor ends acked or
    dead-lettered exactly once (no lease expires here, so no duplicates)."""
    spool = make_spool()
    rng = random.Random(7)
    appended: list[bytes] = []
    acked: list[bytes] = []
    dead: list[bytes] = []
    counter = 0
    for _ in range(150):
        op = rng.random()
        now = time.time()
        if op < 0.4:
            n = rng.randint(1, 20)
            batch = [f'{{"n":{counter + i}}}'.encode() for i in range(n)]
            counter += n
            env = rng.choice([b"A", b"B", b"C"])
            spool.append([(env, v) for v in batch], now=now)
            appended.extend(batch)
        else:
            records = spool.claim(
                max_records=rng.randint(1, 30), max_bytes=1 << 20, lease=60, now=now
            )
            if not records:
                continue
            fate = rng.random()
            ids = [r.id for r in records]
            if fate < 0.6:
                spool.ack(ids)
                acked.extend(r.visitor for r in records)
            elif fate < 0.9:
                spool.retry(ids, attempts=1, first_attempt_at=now, next_attempt_at=now)
            else:
                spool.dead_letter(ids, reason="random", now=now)
                dead.extend(r.visitor for r in records)
    for record in claim_all(spool, now=time.time() + 1):
        acked.append(record.visitor)
        spool.ack([record.id])
    assert sorted(acked + dead) == sorted(appended)
    assert len(set(acked)) == len(acked)
    stats = spool.stats(now=time.time())
    assert stats.depth == 0
    assert sum(stats.dead_letters.values()) == len(dead)
