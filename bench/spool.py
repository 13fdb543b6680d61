"""Durable spools: caller cost, end-to-end throughput, memory under a backlog, the
loss window of group commit on SIGKILL, and drain rate vs backlog size.

``python -m bench spool``; figures are saved to ``docs/bench/spool.json``. Sizes come
from the environment so ``make bench`` stays short: ``XPEVENTS_BENCH_SPOOL_EVENTS``
(events per throughput run, default 20,000), ``XPEVENTS_BENCH_BACKLOG`` (backlog for the
RSS run, default 200,000; the issue's figure is 1,000,000),
``XPEVENTS_BENCH_DRAIN_BACKLOGS`` (backlogs drained, default ``10000,100000``; add
``1000000`` for the issue's top point), ``XPEVENTS_BENCH_REDIS`` (default
``redis://127.0.0.1:6379/9``).

Drain rate: a dispatcher whose endpoint accepts connections but never answers fills a
SQLite (or Redis) spool with N events (``durability="interval"``) and is closed; a new
dispatcher on the same spool then delivers the backlog to a live collector, and the rate
is N over the time until the collector has every event but the few the filler's two
senders had in flight (its batches are 1 KB, so at most a handful: they come back only
when their lease runs out, as after a crash). The drainer has the defaults.
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

from bench._common import guard_network, knob, load_average, percentiles, table
from bench._results import save

EVENTS = int(knob("spool", "SPOOL_EVENTS", "20000", "events per throughput run"))
BACKLOG = int(knob("spool", "BACKLOG", "200000", "backlog of the RSS run"))
DRAIN_BACKLOGS = [
    int(x) for x in knob("spool", "DRAIN_BACKLOGS", "10000,100000", "backlogs drained").split(",")
]
REDIS = knob("spool", "REDIS", "redis://127.0.0.1:6379/9", "Redis for the redis spools")
RESULTS: dict[str, Any] = {}


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
    rows: list[tuple[Any, ...]] = []
    saved: list[dict[str, Any]] = []
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
        saved.append(
            {"spool": name, "events": n, **{f"{k}_us": v for k, v in p.items()}}
            | {"events_per_s": n / elapsed}
        )
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
    RESULTS["throughput"] = saved
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
    rows: list[tuple[Any, ...]] = []
    saved: list[dict[str, Any]] = []
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
        readings, rss = [], []
        started = time.perf_counter()
        for i in range(BACKLOG):
            bd.dispatch_event(make_event(i, run))
            if i in marks:
                front = bd.spool
                if hasattr(front, "flush_buffer"):
                    front.flush_buffer(30)
                rss.append({"queued": i + 1, "rss_mb": rss_mb()})
                readings.append(f"{i + 1:,}: {rss[-1]['rss_mb']:.0f} MB")
        elapsed = time.perf_counter() - started
        depth = bd.stats().spool_depth
        dropped = bd.stats().dropped_total
        bd.close(timeout=1)
        if url.startswith("redis"):
            cleanup_redis(url)
        rows.append((name, f"{BACKLOG:,}", " / ".join(readings), depth, dropped, f"{elapsed:.0f}"))
        saved.append({"spool": name, "backlog": BACKLOG, "rss": rss, "depth": depth})
        saved[-1] |= {"dropped": dropped, "seconds": elapsed}
    RESULTS["backlog_rss"] = saved
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
    rows: list[tuple[Any, ...]] = []
    saved: list[dict[str, Any]] = []
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
        saved.append({"trial": trial + 1, "returned": returned, "stored": stored, "lost": lost})
    RESULTS["loss_window"] = saved
    table(
        "durability='interval' (commit_interval 5 ms): loss on SIGKILL, collector down",
        ["trial", "returned", "in the spool", "lost", "dispatch rate"],
        rows,
    )


def _silent_endpoint() -> tuple[Any, str]:
    """A listening socket that never accepts: requests to it neither fail nor finish."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s, f"http://127.0.0.1:{s.getsockname()[1]}/v1/events"


def _fill(url: str, n: int) -> float:
    """Put ``n`` events in the spool at ``url``; seconds it took. The filler's senders
    are left holding a few leased batches (hung on the silent endpoint): a drainer gets
    those only when their lease expires, 30 s later (see :func:`_drained`)."""
    listener, silent = _silent_endpoint()
    filler = BatchDispatcher(
        endpoint=silent,
        spool=url,
        durability="interval",
        max_queue_events=10_000,
        atexit_timeout=None,
        timeout=600.0,  # its in-flight batches hang rather than fail (no retry backoff)
        batch_size=1,  # and hold a handful of events (counted below)
        max_batch_bytes=1024,
    )
    run = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    for i in range(n):
        filler.dispatch_event(make_event(i, run))
    front = filler.spool
    if hasattr(front, "flush_buffer"):
        front.flush_buffer(60)
    elapsed = time.perf_counter() - started
    filler.close(timeout=0.2)
    listener.close()
    return elapsed


def _drained(collector: Any, backlog: int, started: float, timeout: float) -> tuple[int, float]:
    """Delivered visitors and the seconds to the last of them, once deliveries stop.

    Deliveries stop at the backlog, or when nothing more arrives for 3 s: what is left
    is what the filler's senders still held leased, which comes back only when those
    leases expire (30 s), and is not part of the drain rate.
    """
    got, last_change = 0, started
    while True:
        now = time.perf_counter()
        count = int(collector.stats()["unique_events"])
        if count != got:
            got, last_change = count, now
        if got >= backlog or now - last_change > 3.0 or now - started > timeout:
            return got, max(last_change - started, 1e-9)
        time.sleep(0.05)


def drain_rate(tmp: Path) -> None:
    """Events/s a fresh dispatcher delivers from a backlog of N events already spooled."""
    rows: list[tuple[Any, ...]] = []
    saved: list[dict[str, Any]] = []
    for backlog in DRAIN_BACKLOGS:
        for name, url in (
            ("sqlite", f"sqlite:///{tmp}/drain-{backlog}.db"),
            ("redis", f"{REDIS}?stream=bench:{uuid.uuid4().hex}"),
        ):
            fill_s = _fill(url, backlog)
            with run_collector() as collector:
                started = time.perf_counter()
                drainer = BatchDispatcher(
                    endpoint=collector.events_url,
                    spool=url,
                    durability="interval",
                    atexit_timeout=None,
                )
                got, elapsed = _drained(collector, backlog, started, 60 + backlog / 1000)
                requests = int(collector.stats()["requests"])
                drainer.close(timeout=5)
            if url.startswith("redis"):
                cleanup_redis(url)
            saved.append({"spool": name, "backlog": backlog, "delivered": got})
            rate = got / elapsed
            saved[-1] |= {"seconds": elapsed, "events_per_s": rate, "fill_s": fill_s}
            saved[-1] |= {"requests": requests}
            row = (name, f"{backlog:,}", f"{got:,}", requests, f"{elapsed:.1f}")
            rows.append((*row, f"{rate:,.0f}", f"{backlog / fill_s:,.0f}"))
    RESULTS["drain_rate"] = saved
    table(
        "drain rate vs backlog (durability='interval', a fresh dispatcher, defaults)",
        ["spool", "backlog", "delivered", "requests", "s", "drain events/s", "fill events/s"],
        rows,
    )


def main() -> None:
    guard_network()
    RESULTS["load_average_at_start"] = load_average()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        throughput(tmp)
        loss_window(tmp)
        backlog_rss(tmp)
        drain_rate(tmp)
    RESULTS["load_average_at_end"] = load_average()
    save("spool", RESULTS)


if __name__ == "__main__":
    main()
