"""SqliteSpool: URLs, file format and permissions, bad files, migration, restarts,
fork safety and several processes sharing one file."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sqlite3
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from xpevents.errors import ConfigError, SpoolError
from xpevents.spool import open_spool
from xpevents.spool.sqlite import SCHEMA_VERSION, SqliteSpool, path_from_url


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "1m") -> Iterator[Path]:
    """A small tmpfs (we run as root in CI); yields None-equivalent failure as skip."""
    where.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


# -- URLs ------------------------------------------------------------------------------


def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert path_from_url("sqlite:///relative/path.db") == ("relative/path.db", {})
    assert path_from_url("sqlite:////absolute/path.db") == ("/absolute/path.db", {})
    assert path_from_url("sqlite:////a.db?sync=full") == ("/a.db", {"sync": "full"})
    for bad in ("sqlite://host/x.db", "sqlite:///", "sqlite:///:memory:", "sqlite:////dir/"):
        with pytest.raises(ConfigError):
            path_from_url(bad)
    with pytest.raises(ConfigError, match="unknown option 'color' \\(known: sync, busy_timeout"):
        SqliteSpool.from_url(f"sqlite:///{tmp_path}/x.db?color=red")
    with pytest.raises(ConfigError, match="unknown option 'synch'; did you mean 'sync'\\?"):
        SqliteSpool.from_url(f"sqlite:///{tmp_path}/x.db?synch=full")
    with pytest.raises(ConfigError):
        SqliteSpool.from_url(f"sqlite:////{tmp_path}/x.db?sync=sometimes")
    monkeypatch.chdir(tmp_path)
    relative = open_spool("sqlite:///rel.db")
    assert isinstance(relative, SqliteSpool)
    assert (tmp_path / "rel.db").exists()
    relative.close()
    absolute = open_spool(f"sqlite:///{tmp_path}/abs.db?sync=full")
    assert isinstance(absolute, SqliteSpool) and absolute.sync == "full"
    assert absolute.url == f"sqlite:///{tmp_path}/abs.db"
    absolute.close()
    by_path = open_spool(tmp_path / "path.db")
    assert isinstance(by_path, SqliteSpool)
    by_path.close()
    with pytest.raises(ConfigError):
        SqliteSpool(tmp_path / "x.db", max_spool_events=0)
    with pytest.raises(ConfigError):
        SqliteSpool(tmp_path / "x.db", sync="fast")  # type: ignore[arg-type]


# -- format and permissions ---------------------------------------------------------


def test_files_are_private_and_versioned(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        spool = SqliteSpool(tmp_path / "spool.db")
        spool.append([(b"env", b"{}")], now=time.time())
    finally:
        os.umask(old)
    for name in ("spool.db", "spool.db-wal", "spool.db-shm"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    assert spool.schema_version() == SCHEMA_VERSION
    spool.close()
    db = sqlite3.connect(tmp_path / "spool.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    assert meta["format"] == "xpevents-spool"
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_corrupt_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(SpoolError, match=r"corrupt or not an SQLite database.*move it aside"):
        SqliteSpool(path)


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.commit()
    db.close()
    with pytest.raises(SpoolError, match=r"not an xpevents spool \(tables: users"):
        SqliteSpool(path)


def test_newer_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    SqliteSpool(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(SpoolError, match=r"newer xpevents.*upgrade xpevents"):
        SqliteSpool(path)


def test_missing_directory_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpoolError, match="does not exist; create it"):
        SqliteSpool(tmp_path / "nope" / "spool.db")
    with pytest.raises(SpoolError, match="no such file"):
        SqliteSpool(tmp_path / "absent.db", create=False)


def test_read_only_file_system(tmp_path: Path) -> None:
    where = tmp_path / "ro"
    with tmpfs(where):
        SqliteSpool(where / "spool.db").close()
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        with pytest.raises(SpoolError, match="not writable"):
            SqliteSpool(where / "spool.db")
        with pytest.raises(SpoolError, match="read-only"):
            SqliteSpool(where / "new.db")


def test_disk_full_is_a_spool_error_and_recoverable(tmp_path: Path) -> None:
    where = tmp_path / "small"
    with tmpfs(where, size="1m"):
        ballast = where / "ballast"
        ballast.write_bytes(b"\0" * 300_000)
        spool = SqliteSpool(where / "spool.db")
        visitor = os.urandom(2000).hex().encode()
        with pytest.raises(SpoolError, match="disk is full"):
            for _ in range(2000):
                spool.append([(b"env", visitor)], now=time.time())
        depth = spool.stats(now=time.time()).depth
        assert depth > 0
        # once space is freed, the same spool works again and nothing committed is lost
        ballast.unlink()
        spool.append([(b"env", b"{}")], now=time.time())
        records = spool.claim(max_records=depth + 1, max_bytes=1 << 30, lease=30, now=time.time())
        assert len(records) == depth + 1
        spool.ack([r.id for r in records])
        assert spool.stats(now=time.time()).depth == 0
        spool.close()


# -- migration ------------------------------------------------------------------------

V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    envelope BLOB NOT NULL,
    visitor BLOB NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    lease_until REAL
);
CREATE INDEX queue_next ON queue (next_attempt_at);
CREATE TABLE dead (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    envelope BLOB NOT NULL,
    visitor BLOB NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT NOT NULL,
    failed_at REAL NOT NULL
);
INSERT INTO meta VALUES ('format', 'xpevents-spool'), ('schema_version', '1');
PRAGMA user_version = 1;
"""


def test_migrates_a_version_1_spool(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    now = time.time()
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.execute("PRAGMA journal_mode = WAL")
    rows = [
        (b"envA", b'{"n":1}', now - 50, 0, now - 50, None),
        (b"envB", b'{"n":2}', now - 40, 3, now + 3600, None),  # waiting for a retry
        (b"envA", b'{"n":3}', now - 30, 1, now - 30, now + 3600),  # leased
        (b"envA", b'{"n":4}', now - 20, 0, now - 20, None),
    ]
    db.executemany(
        "INSERT INTO queue (envelope, visitor, enqueued_at, attempts, next_attempt_at, "
        "lease_until) VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    db.execute(
        "INSERT INTO dead (envelope, visitor, enqueued_at, attempts, reason, failed_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (b"envB", b'{"n":5}', now - 60, 2, "http_400", now - 10),
    )
    db.commit()
    db.close()

    spool = SqliteSpool(path)
    assert spool.schema_version() == SCHEMA_VERSION
    stats = spool.stats(now=now)
    assert stats.depth == 4
    assert stats.bytes == sum(len(r[1]) for r in rows)
    assert stats.leased == 1
    assert stats.oldest_enqueued_at == pytest.approx(now - 50)
    assert dict(stats.dead_letters) == {"http_400": 1}
    claimed = spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=now)
    assert [(r.envelope, r.visitor) for r in claimed] == [
        (b"envA", b'{"n":1}'),
        (b"envA", b'{"n":4}'),
    ]
    spool.ack([r.id for r in claimed])
    later = spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=now + 3601)
    later += spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=now + 3601)
    assert sorted(r.visitor for r in later) == [b'{"n":2}', b'{"n":3}']
    retried = next(r for r in later if r.visitor == b'{"n":2}')
    assert retried.attempts == 3
    assert retried.first_attempt_at == pytest.approx(now - 40)
    dead = spool.dead_letters()
    assert [(d.envelope, d.visitor, d.reason, d.attempts) for d in dead] == [
        (b"envB", b'{"n":5}', "http_400", 2)
    ]
    assert spool.replay_dead_letters(now=now) == 1
    spool.close()
    db = sqlite3.connect(path)
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    assert meta["migrated_from"] == "1"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "queue" not in tables and "dead" not in tables
    db.close()
    # a second open is a no-op
    SqliteSpool(path).close()


# -- restarts --------------------------------------------------------------------------


def test_restart_keeps_retry_state_and_dead_letters(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    now = time.time()
    spool = SqliteSpool(path)
    spool.append([(b"env", b'{"a":1}'), (b"env", b'{"a":2}')], now=now)
    first, second = spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=now)
    spool.retry([first.id], attempts=4, first_attempt_at=now - 100, next_attempt_at=now + 60)
    spool.dead_letter([second.id], reason="http_400", now=now)
    spool.close()

    spool = SqliteSpool(path)
    assert spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=now + 59) == []
    assert spool.next_due_at(now=now) == pytest.approx(now + 60)
    (again,) = spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=now + 61)
    assert (again.visitor, again.attempts) == (b'{"a":1}', 4)
    assert again.first_attempt_at == pytest.approx(now - 100)
    assert [d.reason for d in spool.dead_letters()] == ["http_400"]
    assert spool.replay_dead_letters(now=now + 61) == 1
    (replayed,) = spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=now + 62)
    assert replayed.visitor == b'{"a":2}'
    assert replayed.attempts == 0
    spool.close()


def test_leased_records_of_a_dead_process_are_reclaimed_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    now = time.time()
    spool = SqliteSpool(path)
    spool.append([(b"env", b'{"a":1}')], now=now)
    assert len(spool.claim(max_records=10, max_bytes=1 << 20, lease=5, now=now)) == 1
    spool.close()  # "crashed" mid-send
    spool = SqliteSpool(path)
    assert spool.claim(max_records=10, max_bytes=1 << 20, lease=5, now=now + 1) == []
    assert len(spool.claim(max_records=10, max_bytes=1 << 20, lease=5, now=now + 6)) == 1
    spool.close()


def test_make_due_clears_backoff(tmp_path: Path) -> None:
    spool = SqliteSpool(tmp_path / "spool.db")
    now = time.time()
    spool.append([(b"env", b"{}")], now=now)
    (record,) = spool.claim(max_records=1, max_bytes=100, lease=30, now=now)
    spool.retry([record.id], attempts=1, first_attempt_at=now, next_attempt_at=now + 999)
    assert spool.make_due(now=now) == 1
    assert len(spool.claim(max_records=1, max_bytes=100, lease=30, now=now)) == 1
    spool.close()


# -- processes -------------------------------------------------------------------------


def _child_appends(spool: SqliteSpool, n: int) -> None:
    for i in range(n):
        spool.append([(b"env", f'{{"child":{i}}}'.encode())], now=time.time())
    os._exit(0)


def test_fork_reopens_the_connection(tmp_path: Path) -> None:
    spool = SqliteSpool(tmp_path / "spool.db")
    spool.append([(b"env", b'{"parent":0}')], now=time.time())
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_child_appends, args=(spool, 50))
    child.start()
    for i in range(1, 50):
        spool.append([(b"env", f'{{"parent":{i}}}'.encode())], now=time.time())
    child.join(30)
    assert child.exitcode == 0
    stats = spool.stats(now=time.time())
    assert stats.depth == 100
    spool.close()


def _worker(path: str, index: int, n: int, lease: float, out: str) -> None:
    spool = SqliteSpool(path)
    delivered: list[str] = []
    appended = 0
    idle_since: float | None = None
    while True:
        if appended < n:
            batch = [
                (b"env", f'{{"w":{index},"i":{appended + k}}}'.encode())
                for k in range(min(10, n - appended))
            ]
            spool.append(batch, now=time.time())
            appended += len(batch)
        records = spool.claim(max_records=100, max_bytes=1 << 20, lease=lease, now=time.time())
        if records:
            delivered.extend(r.visitor.decode() for r in records)
            spool.ack([r.id for r in records])
            idle_since = None
        elif appended >= n:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 0.5:
                break
            time.sleep(0.01)
    Path(out).write_text("\n".join(delivered))
    spool.close()


def test_four_processes_share_one_spool(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    SqliteSpool(path).close()
    ctx = multiprocessing.get_context("spawn")
    n = 2500
    outs = [str(tmp_path / f"out{i}.txt") for i in range(4)]
    started = time.perf_counter()
    workers = [ctx.Process(target=_worker, args=(path, i, n, 30.0, outs[i])) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    elapsed = time.perf_counter() - started
    delivered = [line for out in outs for line in Path(out).read_text().splitlines()]
    assert len(delivered) == 4 * n, "every record delivered once"
    assert len(set(delivered)) == 4 * n, "no record claimed twice"
    spool = SqliteSpool(path)
    assert spool.stats(now=time.time()).depth == 0
    spool.close()
    print(f"4 processes x {n}: {4 * n / elapsed:.0f} records/s appended+claimed+acked")


def test_unique_paths_do_not_collide(tmp_path: Path) -> None:
    # two spools, two files: nothing shared
    a = SqliteSpool(tmp_path / f"{uuid.uuid4().hex}.db")
    b = SqliteSpool(tmp_path / f"{uuid.uuid4().hex}.db")
    a.append([(b"env", b"{}")], now=time.time())
    assert b.stats(now=time.time()).depth == 0
    a.close()
    b.close()
    a.close()  # idempotent
    with pytest.raises(SpoolError, match="closed"):
        a.append([(b"env", b"{}")], now=time.time())


def test_a_claim_capped_by_bytes_stops_reading_at_the_cap(tmp_path: Path) -> None:
    """Under a backlog a dispatcher claims with max_records = max_queue_events (10,000)
    while max_bytes lets a batch carry a fraction of that: the claim must stop stepping
    rows at the cap, not fetch all 10,000 blobs and drop most of them (it did: a third
    of the forwarder's CPU while draining a backlog)."""
    spool = SqliteSpool(tmp_path / "s.db")
    now = time.time()
    for start in range(0, 20_000, 2_000):
        spool.append([(b"env", b'{"i":%06d}' % i) for i in range(start, start + 2_000)], now=now)
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    db = spool._db._connection.get()
    db.set_progress_handler(count, 100)
    cost = {}
    for max_records in (100, 10_000):
        steps[0] = 0
        records = spool.claim(max_records=max_records, max_bytes=2048, lease=60, now=time.time())
        assert 100 <= len(records) <= 200  # the byte cap, ~13 bytes each
        cost[max_records] = steps[0]
        spool.ack([r.id for r in records])
    db.set_progress_handler(None, 0)
    assert cost[10_000] < 2 * cost[100] + 10, cost
    spool.close()


def test_age_eviction_reads_the_head_until_the_first_young_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``evict_older_than`` walks records in id (enqueue) order, chunk after chunk, and
    stops at the first one not too old: a record behind it is left for a later check."""
    from xpevents.spool.sqlite import tables

    monkeypatch.setattr(tables, "_EVICT_CHUNK", 3)
    spool = SqliteSpool(tmp_path / "age.db")
    now = time.time()
    spool.append([(b"env", b"old-%d" % i) for i in range(7)], now=now - 100)
    spool.append([(b"env", b"young")], now=now)
    spool.append([(b"env", b"old-behind")], now=now - 100)  # a clock stepped back
    with spool._db.write("test") as db:
        assert tables.evict_older_than(db, now - 50) == 7  # three chunks, the last short
    claimed = spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=now)
    assert sorted(r.visitor for r in claimed) == [b"old-behind", b"young"]
    spool.close()


def test_checkpoint_pages_sets_the_autocheckpoint_and_is_validated(tmp_path: Path) -> None:
    """``checkpoint_pages`` (keyword or URL query) is SQLite's ``wal_autocheckpoint`` on
    the spool's connection; the default is SQLite's 1000; a bad value names the option."""

    def pages(spool: SqliteSpool) -> int:
        return int(spool._db.read("test", "PRAGMA wal_autocheckpoint")[0][0])

    default = SqliteSpool(tmp_path / "a.db")
    assert pages(default) == 1000 == default.checkpoint_pages
    default.close()
    keyword = SqliteSpool(tmp_path / "b.db", checkpoint_pages=250)
    assert pages(keyword) == 250
    keyword.close()
    from_url = open_spool(f"sqlite:///{tmp_path}/c.db?checkpoint_pages=64")
    assert isinstance(from_url, SqliteSpool) and pages(from_url) == 64
    from_url.close()
    for bad in (0, -5, 2.5, True, "100"):
        with pytest.raises(ConfigError, match="checkpoint_pages"):
            SqliteSpool(tmp_path / "d.db", checkpoint_pages=bad)  # type: ignore[arg-type]
    for query in ("checkpoint_pages=many", "checkpoint_pages=0", "checkpoint_page=10"):
        with pytest.raises(ConfigError, match="checkpoint_pages"):
            open_spool(f"sqlite:///{tmp_path}/e.db?{query}")


def test_the_relay_opens_sqlite_with_shorter_checkpoints_unless_the_url_says(
    tmp_path: Path,
) -> None:
    from xpevents.relay.cli_inputs import RELAY_CHECKPOINT_PAGES, open_relay_spool

    def opened(url: str) -> int:
        spool = open_relay_spool(url, max_events=1000, max_bytes=1 << 20, max_event_age=60.0)
        assert isinstance(spool, SqliteSpool)
        try:
            return int(spool._db.read("test", "PRAGMA wal_autocheckpoint")[0][0])
        finally:
            spool.close()

    assert RELAY_CHECKPOINT_PAGES == 500
    assert opened(f"sqlite:///{tmp_path}/relay.db") == RELAY_CHECKPOINT_PAGES
    assert opened(f"sqlite:///{tmp_path}/relay.db?checkpoint_pages=2000") == 2000


def test_ack_keeps_depth_and_bytes_in_step_with_the_rows(tmp_path: Path) -> None:
    spool = SqliteSpool(tmp_path / "s.db")
    now = time.time()
    spool.append([(b"env", b"x" * n) for n in (10, 20, 30, 40)], now=now)
    records = spool.claim(max_records=10, max_bytes=1 << 20, lease=60, now=now)
    by_size = {len(r.visitor): r.id for r in records}
    spool.ack([by_size[20], by_size[40], by_size[40], 999_999])  # a repeat, an unknown id
    stats = spool.stats(now=now)
    assert (stats.depth, stats.bytes) == (2, 40)
    spool.ack([by_size[10], by_size[30]])
    stats = spool.stats(now=now)
    assert (stats.depth, stats.bytes) == (0, 0)
    spool.close()
