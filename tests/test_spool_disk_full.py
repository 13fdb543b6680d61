"""A SQLite spool on a nearly full disk (issue 15, item 10), on a real 1 MiB tmpfs.

It recovers in place once space returns (the write-ahead log is checkpointed and
truncated after a disk-full error, and at every open), survives a restart on that
volume, and refuses to start with less than the minimum free space, naming it.
Mounting needs root: skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from xpevents import SpoolError
from xpevents.spool.sqlite import SqliteSpool
from xpevents.spool.sqlite.space import MIN_FREE_BYTES, RESERVE_BYTES

ENVELOPE = b'{"url":"https://logx.optimizely.com/v1/events"}'


@contextmanager
def tmpfs(where: Path, size: str = "1m") -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(spool: SqliteSpool) -> int:
    """Append until the disk is full; returns how many visitors went in."""
    visitor = b'{"pad":"' + b"x" * 1500 + b'"}'
    n = 0
    while True:
        try:
            spool.append([(ENVELOPE, visitor)] * 5, now=time.time())
        except SpoolError as error:
            assert "disk is full" in str(error)
            return n
        n += 5
        assert n < 10_000, "the disk never filled"


def _wal(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_recovers_in_place_and_after_a_restart_when_space_returns(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small") as where:
        ballast = where / "ballast"
        ballast.write_bytes(b"\0" * 300_000)
        path = where / "spool.db"
        spool = SqliteSpool(path)
        stored = _fill(spool)
        ballast.unlink()  # the operator frees space
        spool.append([(ENVELOPE, b'{"n":1}')], now=time.time())  # in place
        assert spool.stats(now=time.time()).depth == stored + 1
        spool.close()
        ballast.write_bytes(b"\0" * 200_000)  # fuller again, but above the minimum
        with SqliteSpool(path) as again:  # a restart folds the WAL in and truncates it
            assert _wal(path) == 0
            assert again.stats(now=time.time()).depth == stored + 1
            again.append([(ENVELOPE, b'{"n":2}')], now=time.time())


def test_a_volume_filled_by_the_spool_alone_drains_and_takes_writes_again(
    tmp_path: Path,
) -> None:
    """The issue's case: the WAL holds the space; delivering and a restart give it back."""
    with tmpfs(tmp_path / "small") as where:
        path = where / "spool.db"
        spool = SqliteSpool(path)
        stored = _fill(spool)
        delivered = 0
        for _ in range(1000):
            try:
                records = spool.claim(max_records=50, max_bytes=1 << 30, lease=0, now=time.time())
                if not records:
                    break
                spool.ack([r.id for r in records])
            except SpoolError:
                time.sleep(0.2)
                continue
            delivered += len(records)
        assert delivered == stored
        spool.append([(ENVELOPE, b'{"n":1}')], now=time.time())
        spool.close()
        with SqliteSpool(path) as again:
            again.append([(ENVELOPE, b'{"n":2}')], now=time.time())
            assert again.stats(now=time.time()).depth == 2


def test_refuses_to_start_below_the_minimum_free_space(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small") as where:
        free = os.statvfs(where).f_bavail * os.statvfs(where).f_frsize
        (where / "ballast").write_bytes(b"\0" * (free - MIN_FREE_BYTES // 2))
        minimum = (MIN_FREE_BYTES + RESERVE_BYTES) // 1024
        with pytest.raises(SpoolError, match=f"needs at least {minimum} KiB"):
            SqliteSpool(where / "spool.db")
