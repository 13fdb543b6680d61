"""SIGKILL crash loops (issue 15): BatchDispatcher + SQLite, BatchDispatcher + Redis and
the relay, each killed at random moments (fixed seed) while acknowledging visitors,
into a real collector. Every acknowledged visitor is delivered (lost == 0); duplicates
are allowed (at least once) and counted. The short runs are in ``make test``; the long
ones (30 kills) in ``make test-long``.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from harness import Ledger, client_code, crash_loop, kill, producer_code, start_child, tally

from spool_redis_server import RedisServer
from xpevents import BatchDispatcher
from xpevents.relay.testing import run_relay
from xpevents.testing import run_collector

KILLS = [pytest.param(2, id="short"), pytest.param(30, id="long", marks=pytest.mark.long)]


def _drain(spool: str, endpoint: str) -> None:
    """A new dispatcher on the same spool sends what the killed ones left."""
    with BatchDispatcher(spool=spool, endpoint=endpoint, flush_interval=0.02, lease=1.0) as bd:
        time.sleep(1.2)  # the killed run's leases expire
        bd.flush(60)


@pytest.mark.parametrize("kills", KILLS)
def test_batch_dispatcher_sqlite_crash_loop(tmp_path: Path, kills: int) -> None:
    spool = f"sqlite:///{tmp_path}/spool.db"
    with run_collector() as collector:
        ledger = Ledger()
        crash_loop(producer_code(spool, collector.base_url), kills, seed=15, ledger=ledger)
        _drain(spool, collector.base_url)
        result = tally(collector, ledger)
    assert result.acknowledged > 0
    assert result.lost == 0, result


@pytest.mark.parametrize("kills", KILLS)
def test_batch_dispatcher_redis_crash_loop(tmp_path: Path, kills: int) -> None:
    with RedisServer(directory=str(tmp_path)) as server, run_collector() as collector:
        spool = server.url + "?stream=chaos"
        ledger = Ledger()
        crash_loop(producer_code(spool, collector.base_url), kills, seed=16, ledger=ledger)
        _drain(spool, collector.base_url)
        result = tally(collector, ledger)
    assert result.acknowledged > 0
    assert result.lost == 0, result


@pytest.mark.parametrize("kills", KILLS)
def test_relay_crash_loop(tmp_path: Path, kills: int) -> None:
    spool = f"sqlite:///{tmp_path}/relay.db"
    rng = random.Random(17)
    ledger = Ledger()
    with run_collector() as collector:
        options = {"spool": spool, "upstream": collector.events_url, "lease": 1}
        for _ in range(kills):
            with run_relay(**options) as relay:
                client, reader = start_child(client_code(relay.base_url), ledger)
                time.sleep(rng.uniform(0.3, 0.8))
                relay.kill()
                kill(client, reader)
        with run_relay(**options):
            result = tally(collector, ledger, timeout=60)
    assert result.acknowledged > 0
    assert result.lost == 0, result
