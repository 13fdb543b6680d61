"""At least once across SIGKILL: a child dispatches through ``BatchDispatcher`` into a
durable spool while the collector is slow (or down), is killed mid-run, and a new
process opens the same spool and delivers. Every event whose ``dispatch_event``
returned must reach the collector; duplicates are reported.

The child prints (and flushes) one line per returned ``dispatch_event``: the event's
uuid. Lines still in the pipe when the child dies were returned too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from spool_redis_server import free_port
from xpevents.dispatch.batch import BatchDispatcher
from xpevents.send.retry import RetryPolicy
from xpevents.testing import CollectorHandle, run_collector

N_EVENTS = int(os.environ.get("XPEVENTS_CRASH_EVENTS", "5000"))
LEASE = 2.0

CHILD = textwrap.dedent(
    """
    import sys, time, uuid
    from xpevents.dispatch.batch import BatchDispatcher
    from xpevents.send.retry import RetryPolicy
    from xpevents.events.model import LogEvent

    spool, endpoint, n, durability, run = sys.argv[1:6]
    retry = RetryPolicy(max_attempts=None, backoff_base=0.05, backoff_max=0.5,
                        max_retry_after=5.0, max_retry_age=600.0)
    bd = BatchDispatcher(endpoint=endpoint, spool=spool, durability=durability,
                         lease=2.0, flush_interval=0.05, batch_size=100, retry=retry,
                         atexit_timeout=None)
    out = sys.stdout
    for i in range(int(n)):
        u = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run}/{i}"))
        params = {
            "account_id": "1001", "project_id": "2002", "revision": "7",
            "client_name": "python-sdk", "client_version": "5.7.0",
            "anonymize_ip": False, "enrich_decisions": True,
            "visitors": [{
                "visitor_id": f"user-{i}", "attributes": [],
                "snapshots": [{
                    "decisions": [{"campaign_id": "11", "experiment_id": "22",
                                   "variation_id": "33"}],
                    "events": [{"entity_id": "11", "uuid": u,
                                "timestamp": 1700000000000 + i,
                                "key": "campaign_activated"}],
                }],
            }],
        }
        bd.dispatch_event(LogEvent("https://logx.optimizely.com/v1/events", params))
        out.write(u + "\\n")
        out.flush()
        if i % 50 == 0:
            time.sleep(0.002)
    out.write("DONE\\n")
    out.flush()
    time.sleep(600)
    """
)

FAST_RETRY = RetryPolicy(
    max_attempts=None, backoff_base=0.05, backoff_max=0.5, max_retry_after=5.0, max_retry_age=600.0
)


def run_child_and_kill(
    tmp_path: Path, spool: str, endpoint: str, durability: str, kill_after: int
) -> list[str]:
    """Start the child, SIGKILL it once ``kill_after`` dispatches returned; return them."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    run = uuid.uuid4().hex
    child = subprocess.Popen(
        [sys.executable, str(script), spool, endpoint, str(N_EVENTS), durability, run],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    returned: list[str] = []
    killed = threading.Event()

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            line = line.strip()
            if line == "DONE":
                continue
            if line:
                returned.append(line)
            if len(returned) >= kill_after and not killed.is_set():
                os.kill(child.pid, signal.SIGKILL)
                killed.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(120)
    child.wait(10)
    assert killed.is_set(), f"child ended first: {child.stderr.read() if child.stderr else ''}"
    assert child.returncode == -signal.SIGKILL
    if child.stderr is not None:
        child.stderr.close()
    return returned


def delivered_uuids(collector: CollectorHandle) -> set[str]:
    seen: set[str] = set()
    offset = 0
    while True:
        page = collector.events(limit=1000, offset=offset)
        if not page:
            return seen
        seen.update(str(event["uuid"]) for event in page)
        offset += len(page)


def recover_and_check(
    spool: str, collector: CollectorHandle, endpoint: str, returned: list[str]
) -> dict[str, Any]:
    """A new 'process' (this one) opens the spool and delivers; check by uuid."""
    started = time.monotonic()
    with BatchDispatcher(
        endpoint=endpoint,
        spool=spool,
        lease=LEASE,
        flush_interval=0.05,
        retry=FAST_RETRY,
        atexit_timeout=None,
    ) as recovery:
        # No kick needed: a dispatcher opened on a spool with a backlog starts sending it.
        deadline = time.monotonic() + 60
        while True:
            seen = delivered_uuids(collector)
            missing = set(returned) - seen
            if not missing:
                break
            assert time.monotonic() < deadline, (
                f"{len(missing)} returned events never delivered; stats {recovery.stats()}"
            )
            time.sleep(0.2)
        recovery.flush(timeout=10)
        remaining = recovery.stats().spool_depth
    stats = collector.stats()
    report = {
        "returned": len(returned),
        "delivered_unique": stats["unique_events"],
        "duplicates": stats["duplicates"],
        "spool_depth_after": remaining,
        "recovery_s": round(time.monotonic() - started, 2),
    }
    print(f"\ncrash recovery {spool.split('?')[0][:40]}: {report}")
    return report


@pytest.fixture
def redis_stream() -> Iterator[str]:
    name = f"crash:{uuid.uuid4().hex}"
    yield f"redis://127.0.0.1:6379/9?stream={name}"
    client = redis.Redis(port=6379, db=9)
    keys = client.keys(f"{name}*")
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(params=["sqlite", "redis"])
def spool_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/crash.db"
        return
    name = f"crash:{uuid.uuid4().hex}"
    yield f"redis://127.0.0.1:6379/9?stream={name}"
    client = redis.Redis(port=6379, db=9)
    keys = client.keys(f"{name}*")
    if keys:
        client.delete(*keys)
    client.close()


def test_sigkill_with_a_slow_collector(tmp_path: Path, spool_url: str) -> None:
    with run_collector(latency_ms=200) as collector:
        returned = run_child_and_kill(
            tmp_path, spool_url, collector.events_url, "always", kill_after=N_EVENTS // 2
        )
        before = collector.stats()["unique_events"]
        assert before < len(returned), "the kill should leave events undelivered"
        collector.control(latency_ms=0)
        report = recover_and_check(spool_url, collector, collector.events_url, returned)
    assert report["spool_depth_after"] == 0


def test_sigkill_with_the_collector_down(tmp_path: Path, spool_url: str) -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/v1/events"  # nothing listens there yet
    returned = run_child_and_kill(tmp_path, spool_url, endpoint, "always", kill_after=N_EVENTS // 2)
    with run_collector(port=port) as collector:
        report = recover_and_check(spool_url, collector, endpoint, returned)
        assert report["duplicates"] == 0  # nothing had been delivered before the crash
    assert report["spool_depth_after"] == 0
