"""SpoolFront: write-through and group commit, the memory fallback and drops, recovery
from a Redis outage and a full disk."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from spool_redis_server import RedisServer
from xpevents.errors import ConfigError, SpoolError
from xpevents.spool.base import Spool, SpoolRecord
from xpevents.spool.front import SpoolFront
from xpevents.spool.redis import RedisSpool
from xpevents.spool.sqlite import SqliteSpool


class Flaky:
    """A store wrapper whose appends fail while ``broken``; counts append calls."""

    def __init__(self, store: Spool) -> None:
        self.store = store
        self.url = store.url
        self.durable = True
        self.broken = False
        self.appends = 0

    def append(self, entries: Sequence[tuple[bytes, bytes]], *, now: float) -> None:
        if self.broken:
            raise SpoolError("simulated: the store is down")
        self.appends += 1
        self.store.append(entries, now=now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def all_records(spool: Spool) -> list[SpoolRecord]:
    out: list[SpoolRecord] = []
    while batch := spool.claim(max_records=1000, max_bytes=1 << 30, lease=30, now=time.time()):
        out.extend(batch)
        spool.ack([r.id for r in batch])
    return out


def entries(n: int, tag: str = "v") -> list[tuple[bytes, bytes]]:
    return [(b"env", f'{{"{tag}":{i}}}'.encode()) for i in range(n)]


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteSpool]:
    store = SqliteSpool(tmp_path / "spool.db")
    yield store
    store.close()


def test_arguments_are_checked(sqlite_store: SqliteSpool) -> None:
    with pytest.raises(ConfigError):
        SpoolFront(sqlite_store, durability="sometimes")
    with pytest.raises(ConfigError):
        SpoolFront(sqlite_store, on_spool_error="explode")
    with pytest.raises(ConfigError):
        SpoolFront(sqlite_store, commit_interval=0)
    with pytest.raises(ConfigError):
        SpoolFront(object())  # type: ignore[arg-type]


def test_always_writes_through(sqlite_store: SqliteSpool) -> None:
    front = SpoolFront(sqlite_store)
    assert isinstance(front, Spool) and front.durable and front.url == sqlite_store.url
    front.append(entries(3), now=time.time())
    assert front.buffered == 0
    assert sqlite_store.stats(now=time.time()).depth == 3  # committed before returning
    assert len(all_records(front)) == 3
    front.close()


def test_interval_group_commits(sqlite_store: SqliteSpool) -> None:
    store = Flaky(sqlite_store)
    front = SpoolFront(store, durability="interval", commit_interval=0.05)  # type: ignore[arg-type]
    for item in entries(200):
        front.append([item], now=time.time())
    assert front.buffered > 0
    assert front.stats(now=time.time()).depth == 200  # buffered ones included
    due = front.next_due_at(now=time.time())
    assert due is not None and due <= time.time() + 0.06
    assert front.flush_buffer(5.0)
    assert front.buffered == 0
    assert store.appends < 20  # grouped, not one transaction per append
    assert len(all_records(front)) == 200
    front.close()


@pytest.mark.parametrize("durability", ["always", "interval"])
def test_memory_fallback_holds_and_recovers(
    sqlite_store: SqliteSpool, durability: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = Flaky(sqlite_store)
    drops: list[tuple[str, int]] = []
    front = SpoolFront(
        store,  # type: ignore[arg-type]
        durability=durability,
        on_drop=lambda reason, n: drops.append((reason, n)),
        retry_interval=0.01,
        max_retry_interval=0.05,
    )
    front.append(entries(5, "before"), now=time.time())
    assert front.flush_buffer(5)
    store.broken = True
    with caplog.at_level(logging.WARNING, logger="xpevents.spool.front"):
        for item in entries(50, "during"):
            front.append([item], now=time.time())  # never raises
        if durability == "interval":
            wait_until(lambda: front.fallback_active)
        assert front.fallback_active
        assert front.buffered == 50
        time.sleep(0.1)
        store.broken = False
        wait_until(lambda: not front.fallback_active and front.buffered == 0)
    errors = [r for r in caplog.records if "DURABILITY SUSPENDED" in r.getMessage()]
    assert len(errors) == 1, "one warning per episode"
    assert any("recovered" in r.getMessage() for r in caplog.records)
    assert front.episodes == 1
    assert front.held == 50
    assert drops == []
    assert len(all_records(front)) == 55
    front.close()


def test_buffer_overflow_drops_oldest_and_counts(sqlite_store: SqliteSpool) -> None:
    store = Flaky(sqlite_store)
    store.broken = True
    drops: list[tuple[str, int]] = []
    front = SpoolFront(
        store,  # type: ignore[arg-type]
        max_buffer_events=10,
        on_drop=lambda reason, n: drops.append((reason, n)),
        retry_interval=0.01,
    )
    for item in entries(25):
        front.append([item], now=time.time())
    # A retry the committer thread has in flight returns to the buffer when it fails;
    # the trim that follows counts the rest, so the total settles at exactly 15.
    wait_until(lambda: sum(n for reason, n in drops if reason == "spool_buffer_full") >= 15)
    time.sleep(0.05)
    assert sum(n for reason, n in drops if reason == "spool_buffer_full") == 15
    assert front.dropped["spool_buffer_full"] == 15
    store.broken = False
    assert front.flush_buffer(5)
    assert sorted(r.visitor for r in all_records(front)) == sorted(v for _, v in entries(25)[15:])
    front.close()


@pytest.mark.parametrize("durability", ["always", "interval"])
def test_drop_mode_drops_and_counts(sqlite_store: SqliteSpool, durability: str) -> None:
    store = Flaky(sqlite_store)
    store.broken = True
    drops: list[tuple[str, int]] = []
    front = SpoolFront(
        store,  # type: ignore[arg-type]
        durability=durability,
        on_spool_error="drop",
        on_drop=lambda reason, n: drops.append((reason, n)),
    )
    front.append(entries(7), now=time.time())
    front.flush_buffer(1.0)
    wait_until(lambda: sum(n for _, n in drops) == 7)
    assert {reason for reason, _ in drops} == {"spool_error"}
    assert front.fallback_active
    store.broken = False
    front.append(entries(2, "after"), now=time.time())
    front.flush_buffer(1.0)
    wait_until(lambda: not front.fallback_active)
    assert len(all_records(front)) == 2
    front.close()


def test_failing_reads_are_harmless(sqlite_store: SqliteSpool) -> None:
    front = SpoolFront(sqlite_store)
    front.append(entries(2), now=time.time())
    sqlite_store.close()  # every store call now raises SpoolError
    assert front.claim(max_records=10, max_bytes=1 << 20, lease=30, now=time.time()) == []
    front.ack(["1"])
    front.retry([1], attempts=1, first_attempt_at=0.0, next_attempt_at=0.0)
    front.dead_letter([1], reason="x", now=0.0)
    assert front.next_due_at(now=100.0) is not None
    assert front.stats(now=time.time()).depth == 0
    front.append(entries(1), now=time.time())  # held in memory, never raises
    assert front.fallback_active
    front.close(timeout=0.2)


def test_close_flushes_and_reports_what_it_could_not_commit(tmp_path: Path) -> None:
    store = Flaky(SqliteSpool(tmp_path / "a.db"))
    front = SpoolFront(store, durability="interval", commit_interval=1.0)  # type: ignore[arg-type]
    front.append(entries(10), now=time.time())
    front.close()
    reopened = SqliteSpool(tmp_path / "a.db")
    assert reopened.stats(now=time.time()).depth == 10
    reopened.close()

    store = Flaky(SqliteSpool(tmp_path / "b.db"))
    drops: list[tuple[str, int]] = []
    front = SpoolFront(
        store,  # type: ignore[arg-type]
        durability="interval",
        on_drop=lambda reason, n: drops.append((reason, n)),
    )
    store.broken = True
    front.append(entries(4), now=time.time())
    front.close(timeout=0.2)
    assert drops == [("closed", 4)]
    front.append(entries(1), now=time.time())
    assert drops[-1] == ("closed", 1)


def _child(front: SpoolFront, conn: Any) -> None:
    conn.send(front.buffered)
    front.append(entries(3, "child"), now=time.time())
    conn.send(front.flush_buffer(5.0))
    os._exit(0)


def test_fork_child_starts_empty_with_its_own_thread(tmp_path: Path) -> None:
    front = SpoolFront(SqliteSpool(tmp_path / "f.db"), durability="interval", commit_interval=5)
    front.append(entries(5, "parent"), now=time.time())
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=_child, args=(front, child_end))
    child.start()
    assert parent_end.recv() == 0  # the parent's buffer is the parent's
    assert parent_end.recv() is True
    child.join(10)
    assert front.flush_buffer(5.0)
    assert front.stats(now=time.time()).depth == 8
    front.close()


# -- real outages -------------------------------------------------------------------------


@pytest.mark.parametrize("durability", ["always", "interval"])
def test_nothing_lost_across_a_redis_outage(durability: str) -> None:
    with RedisServer() as server:
        store = RedisSpool.from_url(f"{server.url}?stream=outage")
        front = SpoolFront(store, durability=durability, retry_interval=0.05)
        front.append(entries(100, "before"), now=time.time())
        assert front.flush_buffer(5)
        before = all_records(front)  # delivered before the outage
        assert len(before) == 100
        server.stop()
        stopped = time.monotonic()
        for item in entries(300, "during"):
            front.append([item], now=time.time())
            time.sleep(0.005)  # ~2 s of traffic while Redis is down
        wait_until(lambda: front.fallback_active)
        stats = front.stats(now=time.time())
        assert stats.depth >= 300  # held in memory, visible
        while time.monotonic() - stopped < 3.0:
            time.sleep(0.05)
        server.start()
        wait_until(lambda: not front.fallback_active and front.buffered == 0, timeout=20)
        after = all_records(front)
        assert sorted(r.visitor for r in after) == sorted(v for _, v in entries(300, "during"))
        assert front.dropped == {}
        front.close()


@contextlib.contextmanager
def small_tmpfs(where: Path) -> Iterator[Path]:
    where.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_nothing_lost_across_a_full_disk(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small") as where:
        ballast = where / "ballast"
        ballast.write_bytes(b"\0" * 400_000)
        front = SpoolFront(
            SqliteSpool(where / "spool.db"),
            max_buffer_events=100_000,
            retry_interval=0.02,
            max_retry_interval=0.1,
        )
        visitor = os.urandom(1500).hex().encode()
        sent = 0
        while not front.fallback_active:
            front.append([(b"env", visitor + str(sent).encode())], now=time.time())
            sent += 1
            assert sent < 5000, "the disk never filled"
        for _ in range(50):
            front.append([(b"env", visitor + str(sent).encode())], now=time.time())
            sent += 1
        assert front.fallback_active and front.buffered > 0
        ballast.unlink()  # the operator frees space
        wait_until(lambda: not front.fallback_active and front.buffered == 0)
        assert front.stats(now=time.time()).depth == sent
        assert front.dropped == {}
        front.close()
