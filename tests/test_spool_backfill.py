"""WalBackfill: passive checkpoints of a SQLite spool from a thread of their own, on
real files (the relay's forwarding child runs one, see test_relay_forwarder_process)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from test_relay_forwarder_process import wait_until
from xpevents.errors import ConfigError
from xpevents.spool.sqlite import SqliteSpool
from xpevents.spool.sqlite.backfill import WalBackfill


def _fill(spool: SqliteSpool, records: int) -> None:
    now = time.time()
    for start in range(0, records, 500):
        spool.append([(b"env", b'{"v":"%0600d"}' % i) for i in range(start, start + 500)], now=now)


@pytest.mark.parametrize("name", ["s.db", "dir with space#%/s?.db"])  # escaped in a URI
def test_it_copies_the_log_into_the_database_file_while_the_writer_never_checkpoints(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    spool = SqliteSpool(path, checkpoint_pages=1_000_000)  # the writer never checkpoints
    _fill(spool, 2_000)  # ~1.3 MB of visitors, all in the -wal file
    before = path.stat().st_size
    assert Path(f"{path}-wal").stat().st_size > 1_000_000
    backfill = WalBackfill(path, sync=spool.sync, every=0.001).start()
    try:
        assert wait_until(lambda: path.stat().st_size > before + 1_000_000, timeout=20), (
            before,
            path.stat().st_size,
            backfill.stats(),
        )
        assert backfill.stats().checkpoints >= 1
        assert backfill.stats().failures == 0
        # the spool goes on as before: what was copied reads back whole
        records = spool.claim(max_records=5_000, max_bytes=1 << 30, lease=60, now=time.time())
        assert len(records) == 2_000
    finally:
        backfill.close()
        spool.close()


def test_an_idle_log_is_checked_less_and_less_often(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = SqliteSpool(path)
    backfill = WalBackfill(path, every=0.001, idle_every=0.1).start()
    try:
        time.sleep(1.0)
        # 1 ms doubling to 100 ms: about 16 in a second; 1,000 without the back-off
        assert 1 <= backfill.stats().checkpoints < 200, backfill.stats()
    finally:
        backfill.close()
        spool.close()


@pytest.mark.parametrize("name", ["missing/s.db", "gone.db", "with space %20.db"])
def test_a_file_it_cannot_open_is_counted_not_raised_nor_created(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    backfill = WalBackfill(path, every=0.001).start()
    assert wait_until(lambda: backfill.stats().failures == 1, timeout=20)
    backfill.close()
    assert backfill.stats().checkpoints == 0
    assert not path.exists()


def test_close_stops_the_thread_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = SqliteSpool(path)
    backfill = WalBackfill(path, every=0.001).start()
    assert wait_until(lambda: backfill.stats().checkpoints > 0, timeout=20)
    backfill.close()
    backfill.close()
    assert backfill._thread is not None and not backfill._thread.is_alive()
    ran = backfill.stats().checkpoints
    time.sleep(0.05)
    assert backfill.stats().checkpoints == ran
    assert backfill.start() is backfill  # a closed one does not start again
    assert not backfill._thread.is_alive()
    spool.close()


@pytest.mark.parametrize("option", ["every", "idle_every"])
@pytest.mark.parametrize("value", [0, -1.0, float("nan"), "5"])
def test_bad_intervals_are_refused_by_name(tmp_path: Path, option: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"WalBackfill\({option}="):
        WalBackfill(tmp_path / "s.db", **{option: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("sync", ["ful", "FULL", "off", ""])
def test_an_unknown_sync_is_refused_by_name(tmp_path: Path, sync: str) -> None:
    with pytest.raises(ConfigError, match=r"WalBackfill\(sync=.*expected 'normal' or 'full'"):
        WalBackfill(tmp_path / "s.db", sync=sync)
