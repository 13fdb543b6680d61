"""Contract suite over the shipped profile stores and a user-written dict-backed UPS.

Real components: SQLite files in tmp_path (one shared by 4 processes), the real Redis at
127.0.0.1:6379 with a unique key prefix, a private redis-server restarted mid-run, and a
listening socket that never answers (the slow Redis).
"""

from __future__ import annotations

import multiprocessing
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import xpevents
from spool_redis_server import RedisServer
from test_sticky_bucketing import two_way
from xpevents.profiles import MemoryProfileStore, RedisProfileStore, SQLiteProfileStore


class DictProfiles:
    """The official README's example UPS: a dict."""

    def __init__(self) -> None:
        self.profiles: dict[str, Any] = {}

    def lookup(self, user_id: str) -> Any:
        return self.profiles.get(user_id)

    def save(self, user_profile: dict[str, Any]) -> None:
        self.profiles[user_profile["user_id"]] = user_profile


def _redis_up() -> bool:
    try:
        return bool(redis.Redis(socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


@pytest.fixture(params=["memory", "sqlite", "redis", "dict"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryProfileStore(max_users=1000)
    elif request.param == "sqlite":
        s = SQLiteProfileStore(tmp_path / "profiles.db")
        yield s
        s.close()
    elif request.param == "redis":
        if not _redis_up():
            pytest.skip("no Redis at 127.0.0.1:6379")
        prefix = f"test:{uuid.uuid4().hex}:"
        s = RedisProfileStore(prefix=prefix, socket_timeout=0.5, ttl=60)
        yield s
        keys = list(redis.Redis().scan_iter(prefix + "*"))
        if keys:
            redis.Redis().delete(*keys)
        s.close()
    else:
        yield DictProfiles()


def profile(user: str, **entries: str) -> dict[str, Any]:
    return {
        "user_id": user,
        "experiment_bucket_map": {e: {"variation_id": v} for e, v in entries.items()},
    }


def test_round_trip_in_the_official_shape(store: Any) -> None:
    assert store.lookup("nobody") is None
    store.save(profile("u1", e1="v1", e2="v2"))
    assert store.lookup("u1") == profile("u1", e1="v1", e2="v2")
    store.save(profile("u1", e1="v9", e2="v2"))
    assert store.lookup("u1") == profile("u1", e1="v9", e2="v2")


def test_a_looked_up_profile_is_a_copy(store: Any) -> None:
    if isinstance(store, DictProfiles):
        pytest.skip("the README's UPS hands out its own dict")
    store.save(profile("u1", e1="v1"))
    found = store.lookup("u1")
    found["experiment_bucket_map"]["e1"]["variation_id"] = "changed"
    assert store.lookup("u1") == profile("u1", e1="v1")


def test_batch_interface_and_stats(store: Any) -> None:
    if isinstance(store, DictProfiles):
        pytest.skip("a user UPS has only the official interface")
    store.save_many([profile(f"u{i}", e1=f"v{i}") for i in range(50)])
    found = store.lookup_many([f"u{i}" for i in range(60)])
    assert len(found) == 50 and found["u7"] == profile("u7", e1="v7")
    store.save({"user_id": 5})  # not a profile: counted, not raised
    stats = store.stats()
    assert (stats.lookups, stats.hits, stats.saves) == (60, 50, 50)
    assert stats.errors == 1 and stats.timeouts == 0


def test_the_store_makes_a_client_sticky(store: Any) -> None:
    v1 = two_way()
    with xpevents.Client(v1, event_dispatcher=_Null(), user_profile_service=store) as c:
        assert c.decide("u", "flag").variation_key == "off"
    v2 = two_way()
    v2["revision"] = "4"
    v2["experiments"][0]["trafficAllocation"] = [{"entityId": "v1", "endOfRange": 10000}]
    with xpevents.Client(v2, event_dispatcher=_Null(), user_profile_service=store) as c:
        assert c.decide("u", "flag").variation_key == "off"  # kept from v1
        assert c.decide("new-user", "flag").variation_key == "on"  # v2's allocation


class _Null:
    def dispatch_event(self, event: Any) -> None:
        pass


def test_memory_store_is_bounded() -> None:
    s = MemoryProfileStore(max_users=10)
    for i in range(25):
        s.save(profile(f"u{i}", e="v"))
    assert s.user_count() == 10
    assert s.lookup("u0") is None and s.lookup("u24") is not None


def _writer(path: str, worker: int, users: int) -> None:
    s = SQLiteProfileStore(path, busy_timeout=5.0)
    for i in range(users):
        # every worker writes its own experiment for the same users: merges, no overwrite
        s.save(profile(f"u{i}", **{f"e{worker}": f"v{worker}"}))
    assert s.stats().errors == 0


def test_sqlite_is_shared_by_four_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    SQLiteProfileStore(path)
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_writer, args=(path, w, 200)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    found = SQLiteProfileStore(path).lookup_many([f"u{i}" for i in range(200)])
    assert len(found) == 200
    assert all(len(p["experiment_bucket_map"]) == 4 for p in found.values())


def test_sqlite_survives_fork(tmp_path: Path) -> None:
    s = SQLiteProfileStore(tmp_path / "fork.db")
    s.save(profile("parent", e="v"))
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_fork_child, args=(s,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert s.lookup("child") == profile("child", e="v")


def _fork_child(s: SQLiteProfileStore) -> None:
    assert s.lookup("parent") == profile("parent", e="v")
    s.save(profile("child", e="v"))


def test_redis_that_never_answers_costs_one_timeout_then_rests() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        s = RedisProfileStore(f"redis://127.0.0.1:{port}/0", socket_timeout=0.005)
        started = time.monotonic()
        assert s.lookup("u") is None
        s.save(profile("u", e="v"))
        assert s.lookup("u") is None
        elapsed = time.monotonic() - started
        stats = s.stats()
    assert stats.errors == 1 and stats.timeouts == 1 and stats.skipped == 2
    assert elapsed < 1.0  # 5 ms once, then skipped: a gross bound
    with xpevents.Client(two_way(), event_dispatcher=_Null(), user_profile_service=s) as c:
        assert c.decide("u", "flag").variation_key == "off"  # decided without stickiness


def test_redis_restarted_mid_run() -> None:
    server = RedisServer()
    server.start()
    try:
        s = RedisProfileStore(server.url, socket_timeout=0.2, retry_after=0.0)
        s.save(profile("u", e="v"))
        assert s.lookup("u") == profile("u", e="v")
        server.stop()
        assert s.lookup("u") is None  # down: no profile, counted
        assert s.stats().errors >= 1
        server.start()  # no persistence: the profile is gone, the store works again
        assert s.lookup("u") is None
        s.save(profile("u", e="w"))
        assert s.lookup("u") == profile("u", e="w")
    finally:
        server.stop()


def test_redis_ttl_is_set() -> None:
    if not _redis_up():
        pytest.skip("no Redis at 127.0.0.1:6379")
    prefix = f"test:{uuid.uuid4().hex}:"
    s = RedisProfileStore(prefix=prefix, ttl=30, socket_timeout=0.5)
    s.save(profile("u", e="v"))
    ttl = redis.Redis().ttl(prefix + "u")
    redis.Redis().delete(prefix + "u")
    assert 0 < ttl <= 30
