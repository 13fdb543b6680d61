"""The relay's group commit: concurrent requests share transactions, none is lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from xpevents.errors import SpoolError
from xpevents.relay.writer import SpoolWriter
from xpevents.spool.sqlite import SqliteSpool


class CountingStore(SqliteSpool):
    """A real SQLite spool that counts its transactions and can be made to fail."""

    appends = 0
    fail = False

    def append(self, entries: Sequence[tuple[bytes, bytes]], *, now: float) -> None:
        type(self).appends += 1
        if self.fail:
            raise SpoolError("disk full (test)")
        time.sleep(0.002)  # a commit that takes a while, so requests pile up behind it
        super().append(entries, now=now)


def test_concurrent_writes_share_commits_and_all_land(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "spool.db")
    CountingStore.appends = 0
    writer = SpoolWriter(store, max_events=100_000, max_bytes=1 << 30)
    errors: list[BaseException] = []

    def client(k: int) -> None:
        try:
            for i in range(50):
                writer.write(
                    b"B" + b"http://x/v1/events\n" + b'{"visitors":[]}',
                    [f'{{"visitor_id":"{k}-{i}"}}'.encode()],
                    now=time.time(),
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert store.stats(now=time.time()).depth == 500
    assert CountingStore.appends < 500  # some requests were committed together
    store.close()


def test_a_failed_group_commit_fails_every_request_in_it(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "spool.db")
    store.fail = True
    writer = SpoolWriter(store, max_events=100, max_bytes=1 << 20)
    with pytest.raises(SpoolError):
        writer.write(b"B" + b"http://x/v1/events\n" + b'{"visitors":[]}', [b"{}"], now=0.0)
    assert writer.failing()
    store.fail = False
    writer.write(b"B" + b"http://x/v1/events\n" + b'{"visitors":[]}', [b"{}"], now=0.0)
    assert store.stats(now=time.time()).depth == 1
    store.close()


def test_shared_commits_take_turns_and_a_stuck_holder_only_delays(tmp_path: Path) -> None:
    """``share_commits``: the lock file is held through each commit, waited for at most
    ``wait`` seconds (then SQLite's own lock and busy timeout decide)."""
    import fcntl
    import os

    store = SqliteSpool(tmp_path / "s.db")
    writer = SpoolWriter(store, max_events=1000, max_bytes=1 << 20)
    lock = tmp_path / "commit.lock"
    writer.share_commits(lock, wait=0.2)
    assert writer.write_many([(b"{}", [b'{"a":1}'])], now=time.time()) == [None]
    other = os.open(lock, os.O_RDWR)  # another open file: another flock holder
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        started = time.monotonic()
        assert writer.write_many([(b"{}", [b'{"a":2}'])], now=time.time()) == [None]
        assert 0.2 <= time.monotonic() - started < 5  # waited, then committed anyway
        fcntl.flock(other, fcntl.LOCK_UN)
        released = threading.Timer(0.05, lambda: fcntl.flock(other, fcntl.LOCK_UN))
        fcntl.flock(other, fcntl.LOCK_EX)
        released.start()
        started = time.monotonic()
        assert writer.write_many([(b"{}", [b'{"a":3}'])], now=time.time()) == [None]
        assert time.monotonic() - started < 0.19  # taken as soon as it was released
        released.join()
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the writer let it go
    finally:
        os.close(other)
        store.close()
    assert SqliteSpool(tmp_path / "s.db").stats(now=time.time()).depth == 3
