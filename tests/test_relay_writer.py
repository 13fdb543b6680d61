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
