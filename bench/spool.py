"""Durable spools: caller cost, end-to-end throughput, memory under a backlog, and the
loss window of group commit on SIGKILL.

``python -m bench spool``. Sizes come from the environment so ``make bench`` stays
short: ``XPEVENTS_BENCH_SPOOL_EVENTS`` (events per throughput run, default 20,000),
``XPEVENTS_BENCH_BACKLOG`` (backlog for the RSS run, default 200,000; the issue's
figure is 1,000,000), ``XPEVENTS_BENCH_REDIS`` (default ``redis://127.0.0.1:6379/9``).
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from xpevents.dispatch.batch import BatchDispatcher
from xpevents.events.model import LogEvent
from xpevents.spool.sqlite import SqliteSpool
from xpevents.testing import run_collector

from bench._common import guard_network, percentiles, table

EVENTS = int(os.environ.get("XPEVENTS_BENCH_SPOOL_EVENTS", "20000"))
BACKLOG = int(os.environ.get("XPEVENTS_BENCH_BACKLOG", "200000"))
REDIS = os.environ.get("XPEVENTS_BENCH_REDIS", "redis://127.0.0.1:6379/9")


def make_event(i: int, run: str) -> LogEvent:
    return LogEvent(
        "https://logx.optimizely.com/v1/events",
        {
            "account_id": "1001",
            "project_id": "2002",
            "revision": "7",
            "client_name": "python-sdk",
            "client_version": "5.7.0",
            "anonymize_ip": False,
            "enrich_decisions": True,
            "visitors": [
                {
                    "visitor_id": f"user-{i}",
                    "attributes": [],
                    "snapshots": [
                        {
                            "decisions": [
                                {"campaign_id": "11", "experiment_id": "22", "variation_id": "33"}
                            ],
                            "events": [
                                {
                                    "entity_id": "11",
                                    "uuid": f"{run}-{i}",
                                    "timestamp": 1700000000000 + i,
                                    "key": "campaign_activated",
                                }
                            ],
                        }
                    ],
                }
            ],
        },
    )


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cleanup_redis(url: str) -> None:
    stream = url.split("stream=")[1]
    client = redis.Redis.from_url(url.split("?")[0])
    keys = client.keys(f"{stream}*")
    if keys:
        client.delete(*keys)
    client.close()


def spool_configs(tmp: Path) -> list[tuple[str, str | None, dict[str, Any]]]:
    def sqlite() -> str:
        return f"sqlite:///{tmp}/{uuid.uuid4().hex}.db"

    def redis_url() -> str:
        return f"{REDIS}?stream=bench:{uuid.uuid4().hex}"

    return [
        ("memory", None, {}),
        ("sqlite always", sqlite(), {"durability": "always"}),
        ("sqlite interval", sqlite(), {"durability": "interval"}),
        ("sqlite always sync=full", sqlite() + "?sync=full", {"durability": "always"}),
        ("redis always", redis_url(), {"durability": "always"}),
        ("redis interval", redis_url(), {"durability": "interval"}),
    ]


def throughput(tmp: Path) -> None:
    rows = []
    for name, url, options in spool_configs(tmp):
        n = EVENTS if "full" not in name else min(EVENTS, 2000)
        run = uuid.uuid4().hex[:8]
        events = [make_event(i, run) for i in range(n)]
        with run_collector() as collector:
            bd = BatchDispatcher(
                endpoint=collector.events_url,
                spool=url,
                max_queue_events=max(10_000, n),
                atexit_timeout=None,
                **options,
            )
            lat = []
            perf = time.perf_counter
            started = perf()
            for event in events:
                t0 = perf()
                bd.dispatch_event(event)
                lat.append(perf() - t0)
            collector.wait_for(unique_events=n, timeout=300, interval=0.05)
            elapsed = perf() - started
            bd.close(timeout=10)
        if url and url.startswith("redis"):
            cleanup_redis(url)
        p = percentiles(lat)
        rows.append(
            (
                name,
                n,
                f"{p['p50']:.1f}",
                f"{p['p99']:.1f}",
                f"{p['max']:.0f}",
                f"{n / elapsed:,.0f}",
            )
        )
    table(
        f"dispatch_event caller cost and end-to-end rate ({EVENTS:,} events, tight loop)",
        ["spool", "events", "p50 µs", "p99 µs", "max µs", "end-to-end events/s"],
        rows,
    )


def backlog_rss(tmp: Path) -> None:
    """RSS while a backlog builds up against a dead endpoint: must stay flat."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1/events"
    s.close()
    rows = []
    for name, url in (
        ("sqlite interval", f"sqlite:///{tmp}/backlog.db"),
        ("redis interval", f"{REDIS}?stream=bench:{uuid.uuid4().hex}"),
    ):
        bd = BatchDispatcher(
            endpoint=dead,
            spool=url,
            durability="interval",
            max_queue_events=10_000,
            atexit_timeout=None,
        )
        run = uuid.uuid4().hex[:8]
        marks = {BACKLOG // 4, BACKLOG // 2, BACKLOG - 1}
        readings = []
        started = time.perf_counter()
        for i in range(BACKLOG):
            bd.dispatch_event(make_event(i, run))
            if i in marks:
                front = bd.spool
                if hasattr(front, "flush_buffer"):
                    front.flush_buffer(30)
                readings.append(f"{i + 1:,}: {rss_mb():.0f} MB")
        elapsed = time.perf_counter() - started
        depth = bd.stats().spool_depth
        dropped = bd.stats().dropped_total
        bd.close(timeout=1)
        if url.startswith("redis"):
            cleanup_redis(url)
        rows.append((name, f"{BACKLOG:,}", " / ".join(readings), depth, dropped, f"{elapsed:.0f}"))
    table(
        "RSS of the process while the endpoint is down (backlog in the spool)",
        ["spool", "backlog", "RSS at 25% / 50% / 100%", "spool depth", "dropped", "s"],
        rows,
    )


LOSS_CHILD = textwrap.dedent(
    """
    import sys, time
    from xpevents.dispatch.batch import BatchDispatcher
    from xpevents.events.model import LogEvent
    spool, endpoint, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    bd = BatchDispatcher(endpoint=endpoint, spool=spool, durability="interval",
                         atexit_timeout=None, max_queue_events=100000)
    for i in range(n):
        params = {"account_id": "1001", "project_id": "2002", "revision": "7",
                  "client_name": "python-sdk", "client_version": "5.7.0",
                  "anonymize_ip": False, "enrich_decisions": True,
                  "visitors": [{"visitor_id": "u", "attributes": [], "snapshots": [
                      {"decisions": [], "events": [{"entity_id": "11", "uuid": str(i),
                       "timestamp": 1, "key": "campaign_activated"}]}]}]}
        bd.dispatch_event(LogEvent("https://logx.optimizely.com/v1/events", params))
        sys.stdout.write(f"{i}\\n")
        sys.stdout.flush()
        if i % 100 == 0:
            time.sleep(0.001)
    time.sleep(600)
    """
)


def loss_window(tmp: Path) -> None:
    """durability="interval": events whose dispatch_event returned but lost on SIGKILL."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1/events"
    s.close()
    script = tmp / "loss_child.py"
    script.write_text(LOSS_CHILD)
    rows = []
    for trial in range(3):
        path = tmp / f"loss{trial}.db"
        child = subprocess.Popen(
            [sys.executable, str(script), f"sqlite:///{path}", dead, "200000"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        returned = 0
        first_at = killed_at = 0.0
        for _ in child.stdout:
            returned += 1
            if returned == 1:
                first_at = time.perf_counter()
            if returned == 30_000 + 10_000 * trial and not killed_at:
                killed_at = time.perf_counter()
                os.kill(child.pid, signal.SIGKILL)
        child.wait()
        spool = SqliteSpool(path)
        stored = spool.stats(now=time.time()).depth
        spool.close()
        rate = returned / max(1e-6, killed_at - first_at)
        lost = max(0, returned - stored)
        rows.append((trial + 1, f"{returned:,}", f"{stored:,}", lost, f"{rate:,.0f}/s"))
    table(
        "durability='interval' (commit_interval 5 ms): loss on SIGKILL, collector down",
        ["trial", "returned", "in the spool", "lost", "dispatch rate"],
        rows,
    )


def main() -> None:
    guard_network()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        throughput(tmp)
        loss_window(tmp)
        backlog_rss(tmp)


if __name__ == "__main__":
    main()
