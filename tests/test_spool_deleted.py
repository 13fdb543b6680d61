"""A SQLite spool file deleted (or replaced) under a running process (issue 15, item 4).

SQLite goes on committing to the unlinked inode; without a check every later write is
acknowledged and then lost at the next start. The spool now notices (device and inode
of the path vs the file it opened, checked before each commit that adds visitors):
writes are refused with a ``problem`` naming the file, logged once at ERROR, shown in
``stats()``, and the relay answers 503 with ``Retry-After`` and says why in ``/readyz``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

import pytest

from xpevents import BatchDispatcher, SpoolError
from xpevents.relay.testing import run_relay
from xpevents.spool.sqlite import SqliteSpool

from payloads import event, payload, visitor

ENVELOPE = b'{"url":"https://logx.optimizely.com/v1/events"}'


def test_a_deleted_file_refuses_writes_once_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "spool.db"
    spool = SqliteSpool(path)
    spool.append([(ENVELOPE, b'{"n":1}')], now=time.time())
    assert spool.problem is None
    os.unlink(path)
    with caplog.at_level(logging.ERROR, logger="xpevents.spool.sqlite"):
        for _ in range(3):
            with pytest.raises(SpoolError, match="was deleted while this process had it open"):
                spool.append([(ENVELOPE, b'{"n":2}')], now=time.time())
    assert spool.problem is not None and str(path) in spool.problem
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    # What was accepted before is still in the open file: it is still delivered.
    (record,) = spool.claim(max_records=10, max_bytes=1 << 20, lease=30, now=time.time())
    assert record.visitor == b'{"n":1}'
    spool.ack([record.id])
    assert spool.stats(now=time.time()).depth == 0
    spool.close()


def test_a_replaced_file_is_noticed_too(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = SqliteSpool(path)
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    os.replace(other, path)
    assert spool.problem is not None and "replaced by another file" in spool.problem
    with pytest.raises(SpoolError, match="replaced"):
        spool.append([(ENVELOPE, b"{}")], now=time.time())
    spool.close()


def test_an_untouched_file_never_reports_a_problem(tmp_path: Path) -> None:
    with SqliteSpool(tmp_path / "spool.db") as spool:
        for n in range(50):
            spool.append([(ENVELOPE, b'{"n":%d}' % n)], now=time.time())
        assert spool.problem is None and spool.stats(now=time.time()).depth == 50


def test_batch_dispatcher_counts_what_it_cannot_store(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with BatchDispatcher(
        spool=f"sqlite:///{path}",
        endpoint="http://127.0.0.1:9/unused",
        flush_interval=60,
        on_spool_error="drop",
    ) as bd:
        bd.dispatch_event(event())
        os.unlink(path)
        bd.dispatch_event(event(n=2))
        stats = bd.stats()
        assert stats.dropped == {"spool_error": 2}
        assert stats.spool_problem is not None and "deleted" in stats.spool_problem
        bd.close(0)


def test_relay_answers_503_and_readyz_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    with run_relay(spool=f"sqlite:///{path}", upstream="http://127.0.0.1:9/v1/events") as relay:
        assert relay.http.post("/v1/events", json=payload([visitor()])).status_code == 204
        assert relay.readyz().status_code == 200
        os.unlink(path)
        answer = relay.http.post("/v1/events", json=payload([visitor()]))
        assert answer.status_code == 503 and answer.headers["Retry-After"]
        assert "deleted" in answer.json()["error"]
        ready = relay.readyz()
        assert ready.status_code == 503
        assert any("was deleted" in p for p in ready.json()["problems"])
        metrics = relay.metrics()
        assert metrics['xpevents_relay_refused_visitors_total{reason="spool_error"}'] == 1
