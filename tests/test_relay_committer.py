"""The relay's committer (group commit from the event loop) and SpoolWriter.write_many.

A real SQLite spool in ``tmp_path``; the relay's own ASGI app in process (httpx's ASGI
transport) where the HTTP answers matter; its upstream is a closed loopback port, so
nothing leaves the spool while a test counts it.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from test_relay import payload_body
from xpevents.errors import SpoolError, SpoolFull
from xpevents.relay.app import Relay, RelaySettings
from xpevents.relay.committer import Committer, _Ticker
from xpevents.relay.writer import SpoolWriter
from xpevents.spool.sqlite import SqliteSpool

from servers import closed_port_url

ENVELOPE = b"B" + b"http://x/v1/events\n" + b'{"visitors":[]}'


class CountingStore(SqliteSpool):
    """A real SQLite spool counting its transactions (each takes a little while)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.appends = 0

    def append(self, entries: Sequence[tuple[bytes, bytes]], *, now: float) -> None:
        self.appends += 1
        time.sleep(0.002)  # requests pile up behind a commit in progress
        super().append(entries, now=now)


def visitors(prefix: str, n: int) -> list[bytes]:
    return [f'{{"visitor_id":"{prefix}-{i}"}}'.encode() for i in range(n)]


def depth_on_disk(path: Path) -> int:
    """The depth another connection to the file reads: committed, not just buffered."""
    other = SqliteSpool(path)
    try:
        return other.stats(now=time.time()).depth
    finally:
        other.close()


def test_concurrent_requests_share_transactions_and_all_are_on_disk(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "spool.db")
    committer = Committer(SpoolWriter(store, max_events=100_000, max_bytes=1 << 30))

    async def main() -> None:
        writes = [committer.write(ENVELOPE, visitors(f"r{k}", 2)) for k in range(200)]
        await asyncio.wait_for(asyncio.gather(*writes), timeout=60)

    asyncio.run(main())
    assert depth_on_disk(tmp_path / "spool.db") == 400  # every returned write committed
    assert store.appends < 200 // 2  # grouped: at least 2 requests per transaction on average
    committer.close()
    store.close()


def test_write_many_refuses_only_the_request_over_the_limit(tmp_path: Path) -> None:
    store = SqliteSpool(tmp_path / "spool.db")
    writer = SpoolWriter(store, max_events=10, max_bytes=1 << 20)
    results = writer.write_many(
        [(ENVELOPE, visitors(name, n)) for name, n in (("a", 4), ("b", 4), ("c", 4), ("d", 2))],
        now=time.time(),
    )
    assert results[0] is None and results[1] is None and results[3] is None
    assert isinstance(results[2], SpoolFull)  # 4 + 4 + 4 > 10; the 2 after it still fit
    assert depth_on_disk(tmp_path / "spool.db") == 10
    store.close()


def relay_on(store: SqliteSpool, **settings: object) -> Relay:
    upstream = closed_port_url()
    return Relay(
        store,
        RelaySettings(upstream=upstream, upstream_eu=upstream, **settings),  # type: ignore[arg-type]
    )


async def post_all(relay: Relay, bodies: list[bytes]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=relay.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
        posts = [client.post("/v1/events", content=body) for body in bodies]
        return list(await asyncio.wait_for(asyncio.gather(*posts), timeout=60))


def test_a_full_spool_answers_503_to_the_request_over_the_limit_only(tmp_path: Path) -> None:
    store = SqliteSpool(tmp_path / "spool.db")
    relay = relay_on(store, max_spool_events=10, retry_after=7)
    sizes = [4, 4, 4, 2]  # 14 > 10: whatever the order, exactly one of them does not fit
    bodies = [payload_body([f"{k}-{i}" for i in range(n)]) for k, n in enumerate(sizes)]
    try:
        responses = asyncio.run(post_all(relay, bodies))
        refused = [r for r in responses if r.status_code == 503]
        assert len(refused) == 1, [r.status_code for r in responses]
        assert refused[0].headers["Retry-After"] == "7"
        assert refused[0].json()["reason"] == "spool_full"
        assert all(r.status_code == 204 for r in responses if r not in refused)
        accepted = sum(n for n, r in zip(sizes, responses, strict=True) if r.status_code == 204)
        assert depth_on_disk(tmp_path / "spool.db") == accepted == 10
    finally:
        relay.close(timeout=0)


def test_an_invalid_body_among_concurrent_ones_fails_alone(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "spool.db")
    relay = relay_on(store)
    good = [payload_body([f"g{k}-{i}" for i in range(3)]) for k in range(20)]
    bad = b'{"account_id": "1", "visitors": "not a list"}'
    bodies = [*good[:10], bad, *good[10:]]
    try:
        responses = asyncio.run(post_all(relay, bodies))
        statuses = [r.status_code for r in responses]
        assert statuses[10] == 400 and responses[10].json()["path"]
        assert statuses[:10] + statuses[11:] == [204] * 20
        assert depth_on_disk(tmp_path / "spool.db") == 60
        assert store.appends < 20  # the good ones were still committed in groups
    finally:
        relay.close(timeout=0)


class HeldLock:
    """Another connection holding the spool's write lock (as the forwarding process
    does during a claim or an ack) until released."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(
            str(path), isolation_level=None, timeout=10, check_same_thread=False
        )
        self.db.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.db.execute("COMMIT")
        self.db.close()


def test_try_append_writes_only_while_the_lock_is_free(tmp_path: Path) -> None:
    store = SqliteSpool(tmp_path / "spool.db", busy_timeout=5.0)
    held = HeldLock(tmp_path / "spool.db")
    started = time.monotonic()
    assert store.try_append([(ENVELOPE, b'{"visitor_id":"a"}')], now=time.time()) is False
    assert time.monotonic() - started < 1.0  # did not wait for the busy timeout (5 s)
    held.release()
    assert store.try_append([(ENVELOPE, b'{"visitor_id":"a"}')], now=time.time()) is True
    assert depth_on_disk(tmp_path / "spool.db") == 1
    # the busy timeout is back for everything else: append waits for a lock held 0.2 s
    held = HeldLock(tmp_path / "spool.db")
    threading.Timer(0.2, held.release).start()
    store.append([(ENVELOPE, b'{"visitor_id":"b"}')], now=time.time())
    assert depth_on_disk(tmp_path / "spool.db") == 2
    store.close()


def test_try_write_many_releases_its_reservation_when_locked(tmp_path: Path) -> None:
    store = SqliteSpool(tmp_path / "spool.db")
    writer = SpoolWriter(store, max_events=3, max_bytes=1 << 20)
    assert writer.can_try_write
    held = HeldLock(tmp_path / "spool.db")
    assert writer.try_write_many([(ENVELOPE, visitors("a", 3))], now=time.time()) is None
    held.release()
    # nothing was reserved by the try that found the lock taken: 3 more still fit
    assert writer.try_write_many([(ENVELOPE, visitors("b", 3))], now=time.time()) == [None]
    assert depth_on_disk(tmp_path / "spool.db") == 3
    store.close()


def test_inline_commits_wait_for_a_held_lock_without_blocking_the_loop(tmp_path: Path) -> None:
    """The loop keeps running while another process holds the lock: a short hold is
    waited for by retries in the loop, a long one (over 50 ms) by the thread."""
    store = SqliteSpool(tmp_path / "spool.db")
    committer = Committer(SpoolWriter(store, max_events=100_000, max_bytes=1 << 30), inline=True)

    async def main(hold: float) -> int:
        ticks = 0
        held = HeldLock(tmp_path / "spool.db")
        asyncio.get_running_loop().call_later(hold, held.release)
        writes = asyncio.gather(
            *(committer.write(ENVELOPE, visitors(f"h{hold}-{k}", 2)) for k in range(50))
        )
        while not writes.done():
            await asyncio.sleep(0.005)
            ticks += 1
        await writes
        return ticks

    for hold in (0.02, 0.3):
        ticks = asyncio.run(main(hold))
        assert ticks >= 2, hold  # the loop ran while the writes waited for the lock
    assert depth_on_disk(tmp_path / "spool.db") == 200
    committer.close()
    store.close()


def test_inline_commits_group_one_loop_iteration_and_skip_the_thread(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "spool.db")
    committer = Committer(SpoolWriter(store, max_events=100_000, max_bytes=1 << 30), inline=True)

    async def main() -> None:
        await asyncio.gather(*(committer.write(ENVELOPE, visitors(f"i{k}", 2)) for k in range(200)))

    asyncio.run(main())
    assert depth_on_disk(tmp_path / "spool.db") == 400
    assert store.appends == 0  # try_append in the loop, never the thread's append
    committer.close()
    with pytest.raises(SpoolError, match="shutting down"):
        asyncio.run(main())
    store.close()


def test_try_write_many_tries_the_shared_lock_file_without_waiting(tmp_path: Path) -> None:
    """--workers N: another worker holding the lock file makes a try give up at once."""
    store = SqliteSpool(tmp_path / "spool.db")
    writer = SpoolWriter(store, max_events=100, max_bytes=1 << 20)
    lock_file = tmp_path / "commit.lock"
    writer.share_commits(lock_file, wait=5.0)
    other = os.open(lock_file, os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)
    started = time.monotonic()
    assert writer.try_write_many([(ENVELOPE, visitors("w", 2))], now=time.time()) is None
    assert time.monotonic() - started < 1.0
    fcntl.flock(other, fcntl.LOCK_UN)
    os.close(other)
    assert writer.try_write_many([(ENVELOPE, visitors("w", 2))], now=time.time()) == [None]
    assert depth_on_disk(tmp_path / "spool.db") == 2
    store.close()


def test_the_ticker_calls_back_in_the_loop_after_the_delay_and_falls_back_once_closed() -> None:
    """The inline retries are timed by a thread (the loop's own timers wait at least
    epoll's 1 ms): the callback runs in the loop's thread, never before its delay; a call
    for a loop closed meanwhile is dropped; a closed ticker hands calls to ``call_later``."""
    ticker = _Ticker()

    async def once(delay: float) -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        called: asyncio.Future[tuple[float, int]] = loop.create_future()
        start = time.monotonic()

        def record() -> None:
            called.set_result((time.monotonic() - start, threading.get_ident()))

        ticker.call_soon_after(delay, loop, record)
        return await asyncio.wait_for(called, 10)

    for delay in (0.0002, 0.003):
        elapsed, thread = asyncio.run(once(delay))
        assert elapsed >= delay
        assert thread == threading.get_ident()  # asyncio.run's loop runs in this thread
    worker = ticker._thread
    assert worker is not None and worker.is_alive()

    loop = asyncio.new_event_loop()
    ticker.call_soon_after(0.05, loop, lambda: None)
    loop.close()  # before the tick: that call is dropped, the thread serves the next loop
    elapsed, _ = asyncio.run(once(0.1))
    assert elapsed >= 0.1
    assert ticker._thread is worker and worker.is_alive()
    ticker.close()
    worker.join(10)
    assert not worker.is_alive()

    ticker = _Ticker()
    ticker.close()
    elapsed, _ = asyncio.run(once(0.002))  # closed: the loop's call_later runs it
    assert elapsed >= 0.002
    assert ticker._thread is None
