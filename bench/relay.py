"""xpevents relay: ingest throughput and latency on loopback, and the PHP example's cost.

1. Ingest: ``wrk`` (Lua script for the POST body) against ``POST /v1/events`` of a relay
   with a SQLite spool (the default, durable: 204 after commit), at 1, 10 and 100
   concurrent connections; requests/s and p50/p99 latency. Without ``wrk``, a bounded
   pool of httpx clients in threads measures the same (slower client, lower figures).
   Durable spools are measured with each ``--workers`` count of
   ``XPEVENTS_BENCH_RELAY_WORKERS`` (default ``1,2``: one ingest process, then two on
   the same port and spool with one forwarding process); the memory spool with 1.
2. PHP: ``examples/php/dispatch_events.php`` per-event cost through
   ``RedisSpoolEventDispatcher`` (an XADD into the local Redis, 127.0.0.1:6379, on a
   stream of its own deleted after), ``RelayEventDispatcher`` and the SDK's default
   behaviour (a synchronous POST) to an endpoint that takes 200 ms to answer
   (collector ``latency_ms=200``).

Targets: p99 ingest under 5 ms at 10 clients; the PHP relay path at least 20x cheaper
per event than the synchronous POST; the Redis path p50 at most 0.15 ms and at least
3x cheaper than the relay path. ``python -m bench relay``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Any

import httpx

from xpevents.relay.testing import run_relay
from xpevents.testing import run_collector

from bench._common import ROOT, guard_network, knob, percentiles
from bench._http_floor import run_floor
from bench._results import save
from bench._wrk import fixed_body_script, run_wrk

DURATION = int(knob("relay", "RELAY_SECONDS", "5", "s of wrk per row"))
CLIENTS = (1, 10, 100)
WORKERS = tuple(
    int(n) for n in knob("relay", "RELAY_WORKERS", "1,2", "--workers counts").split(",")
)
FORWARDER = knob(
    "relay",
    "RELAY_FORWARDER",
    "auto",
    "--forwarder of one-process rows (auto: the relay's default)",
)
PHP_SCRIPT = ROOT / "examples" / "php" / "dispatch_events.php"

BODY = (
    '{"account_id":"10367498574","project_id":"20224828075","revision":"241",'
    '"client_name":"php-sdk","client_version":"4.0.1","anonymize_ip":true,'
    '"enrich_decisions":true,"visitors":[{"snapshots":[{"decisions":[{"campaign_id":'
    '"21000015638","experiment_id":"21000014521","variation_id":"21000016755","metadata":'
    '{"flag_key":"","rule_key":"checkout_button_color","rule_type":"experiment",'
    '"variation_key":"control","enabled":true}}],"events":[{"entity_id":"21000015638",'
    '"timestamp":1700000000000,"key":"campaign_activated","uuid":'
    '"8606f592-2a30-4018-a9c3-ae805b73857d"}]}],"visitor_id":"user-1","attributes":[{'
    '"entity_id":"$opt_bot_filtering","key":"$opt_bot_filtering","type":"custom",'
    '"value":true}]}]}'
)


def wrk(url: str, clients: int, seconds: int) -> dict[str, float]:
    """Run wrk POSTing :data:`BODY`; requests/s, p50/p99 in ms, non-2xx count."""
    return run_wrk(url, clients, seconds, fixed_body_script(BODY))


def httpx_pool(url: str, clients: int, seconds: int) -> dict[str, float]:
    """The same measurement with httpx clients in threads (when wrk is missing)."""
    samples: list[float] = []
    bad = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    body = BODY.encode()
    start_usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = start_usage.ru_utime + start_usage.ru_stime

    def worker() -> None:
        mine: list[float] = []
        with httpx.Client(trust_env=False, timeout=10) as http:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                status = http.post(
                    url, content=body, headers={"Content-Type": "application/json"}
                ).status_code
                mine.append(time.perf_counter() - t0)
                if status != 204:
                    bad[0] += 1
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    p = percentiles(samples)
    return {
        "rps": len(samples) / elapsed,
        "p50": p["p50"] / 1000,
        "p99": p["p99"] / 1000,
        "non_2xx": float(bad[0]),
        "generator_cpu_share": (usage.ru_utime + usage.ru_stime - cpu0) / elapsed,
    }


def _generator() -> str | None:
    """``wrk``, or ``python`` when asked for explicitly; ``None``: refuse to measure."""
    if os.environ.get("XPEVENTS_BENCH_RELAY_GENERATOR") == "python":
        print(
            "!!! XPEVENTS_BENCH_RELAY_GENERATOR=python: the load generator is a Python "
            "client in this process; it measures itself as much as the relay (2-4x low) !!!"
        )
        return "python"
    if shutil.which("wrk") is None:
        print(
            "wrk is not installed: no ingest figure (install it: apt-get install wrk; or "
            "XPEVENTS_BENCH_RELAY_GENERATOR=python for a Python client's figures)"
        )
        return None
    return "wrk"


def ingest() -> list[tuple[Any, ...]]:
    tool = _generator()
    if tool is None:
        return []
    measure = wrk if tool == "wrk" else httpx_pool
    rows: list[tuple[Any, ...]] = []
    stream = f"bench-relay-{os.getpid()}"
    redis_url = f"redis://127.0.0.1:6379/9?stream={stream}"
    with tempfile.TemporaryDirectory() as tmp, run_collector() as collector:
        for spool in (f"sqlite:///{tmp}/relay.db", redis_url, "memory://"):
            try:
                rows += _ingest_spool(spool, collector, measure, tool)
            except RuntimeError as exc:
                print(f"  {spool.split(':')[0]} skipped: {str(exc)[:200]}")
            finally:
                if spool == redis_url:
                    _drop_stream(stream)
    return rows + _floor(measure, tool)


def _floor(measure: Any, tool: str) -> list[tuple[Any, ...]]:
    """The same load against a bare asyncio protocol that answers 204 (no relay): the
    latency floor a Python server shares with the generator on this box."""
    rows: list[tuple[Any, ...]] = []
    with run_floor() as base:
        for clients in CLIENTS:
            result = measure(f"{base}/v1/events", clients, DURATION)
            rows.append(_row("floor", 1, "-", clients, tool, result))
            print("  done:", *rows[-1][:5], flush=True)
    return rows


def _row(
    spool: str, workers: int, forwarder: str, clients: int, tool: str, result: dict[str, float]
) -> tuple[Any, ...]:
    return (
        spool,
        workers,
        forwarder,
        clients,
        tool,
        f"{result['rps']:.0f}",
        f"{result['p50']:.2f}",
        f"{result['p99']:.2f}",
        int(result["non_2xx"]),
        f"{result['generator_cpu_share']:.2f}",
        f"{os.getloadavg()[0]:.2f}",
    )


def _ingest_spool(spool: str, collector: Any, measure: Any, tool: str) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for workers in WORKERS if spool != "memory://" else (1,):
        rows += _ingest_workers(spool, workers, collector, measure, tool)
    return rows


def _ingest_workers(
    spool: str, workers: int, collector: Any, measure: Any, tool: str
) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    forwarder = FORWARDER
    if spool == "memory://":
        forwarder = "thread"
    elif workers > 1 or forwarder == "auto":
        forwarder = "process"  # what --workers does whatever --forwarder says, and auto
    with run_relay(
        spool=spool,
        upstream=collector.events_url,
        upstream_eu=collector.eu_events_url,
        max_spool_events=10_000_000,
        max_connections=4096,
        forwarder=forwarder,
        workers=workers,
    ) as relay:
        for clients in CLIENTS:
            result = measure(relay.events_url, clients, DURATION)
            rows.append(_row(spool.split(":")[0], workers, forwarder, clients, tool, result))
            print("  done:", *rows[-1][:5], flush=True)
    return rows


INGEST_FIELDS = (
    "spool",
    "workers",
    "forwarder",
    "clients",
    "generator",
    "rps",
    "p50_ms",
    "p99_ms",
    "non_2xx",
    "generator_cpu_share",
    "load_1m",
)
_NUMERIC = {"rps", "p50_ms", "p99_ms", "generator_cpu_share", "load_1m"}


def ingest_records(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The ingest table's rows as JSON records with numbers (what the report plots)."""
    return [
        {k: float(v) if k in _NUMERIC else v for k, v in zip(INGEST_FIELDS, row, strict=True)}
        for row in rows
    ]


def _drop_stream(stream: str) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=9)
    try:
        client.delete(stream, f"{stream}:envelopes", f"{stream}:meta")
    except redis.RedisError:
        pass
    finally:
        client.close()


def php_cost() -> list[tuple[Any, ...]]:
    php = shutil.which("php")
    if php is None:
        print("php not installed: PHP comparison skipped")
        return []

    def run(*args: str) -> dict[str, Any]:
        done = subprocess.run(
            [php, str(PHP_SCRIPT), *args], capture_output=True, text=True, timeout=600, check=True
        )
        return dict(json.loads(done.stdout))

    rows: list[tuple[Any, ...]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_collector(latency_ms=200) as slow,
        run_relay(
            spool=f"sqlite:///{tmp}/relay.db",
            upstream=slow.events_url,
            upstream_eu=slow.eu_events_url,
        ) as relay,
    ):
        via_relay = run(f"--relay={relay.base_url}", f"--original={slow.events_url}", "--count=500")
        direct = run("--mode=direct", f"--original={slow.events_url}", "--count=20")
        via_redis = _php_redis(run, relay.base_url, slow.events_url)
    measured = [("RelayEventDispatcher", via_relay), ("synchronous POST", direct)]
    if via_redis is not None:
        measured.insert(0, ("RedisSpoolEventDispatcher", via_redis))
    for name, result in measured:
        rows.append(
            (
                name,
                result["count"],
                f"{result['per_event_ms']:.3f}",
                f"{result['p50_ms']:.3f}",
                f"{result['p99_ms']:.3f}",
                json.dumps(result["outcomes"]),
            )
        )
    ratio = direct["per_event_ms"] / max(via_relay["per_event_ms"], 1e-9)
    rows.append(("ratio (direct / relay)", "", f"{ratio:.0f}x", "", "", ""))
    if via_redis is not None:
        ratio = via_relay["p50_ms"] / max(via_redis["p50_ms"], 1e-9)
        rows.append(("ratio p50 (relay / redis)", "", "", f"{ratio:.1f}x", "", ""))
    return rows


def _php_redis(run: Any, relay_url: str, original: str) -> dict[str, Any] | None:
    """The Redis path on a stream of its own in the local Redis (None: no Redis/phpredis)."""
    import uuid

    import redis

    stream = f"bench-php-{uuid.uuid4().hex[:8]}"
    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        client.ping()
    except redis.RedisError:
        print("no Redis on 127.0.0.1:6379: PHP Redis path skipped")
        return None
    try:
        result: dict[str, Any] = run(
            "--mode=redis",
            f"--redis=redis://127.0.0.1:6379/0?stream={stream}",
            f"--relay={relay_url}",
            f"--original={original}",
            "--count=2000",
        )
    except subprocess.CalledProcessError as exc:
        print(f"PHP Redis path failed (phpredis installed?): {exc.stderr[:300]}")
        return None
    finally:
        client.delete(stream, f"{stream}:envelopes", f"{stream}:meta")
        client.close()
    return result


def _table(title: str, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    print(f"\n{title}")
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)))


def main() -> None:
    guard_network()
    print(f"load average before: {os.getloadavg()}")
    ingest_rows = ingest()
    header = (
        "spool",
        "workers",
        "forwarder",
        "clients",
        "generator",
        "req/s",
        "p50 ms",
        "p99 ms",
        "non-2xx",
        "generator CPU share",
        "load 1m",
    )
    if ingest_rows:
        _table(
            f"relay ingest, POST /v1/events, 1 visitor/request, {DURATION} s per row "
            "(generator CPU share: its CPU seconds / wall seconds)",
            header,
            ingest_rows,
        )
        save("relay", {"ingest": ingest_records(ingest_rows)})
    php_rows = php_cost()
    if php_rows:
        _table(
            "PHP example: per-event cost, endpoint latency 200 ms",
            ("dispatcher", "events", "per event ms", "p50 ms", "p99 ms", "outcomes"),
            php_rows,
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()


__all__ = ["main"]
