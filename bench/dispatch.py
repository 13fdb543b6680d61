"""Batching dispatch: xpevents (Client + BatchDispatcher) vs optimizely-sdk 5.7.0.

Contenders, side by side in one run, against one local collector (``xpevents
collector`` in a subprocess; nothing leaves the machine):

* ``xpevents``: ``xpevents.Client(datafile, event_dispatcher=BatchDispatcher(...))``
  (defaults: batch_size 100, flush_interval 1 s, max_queue_events 10,000, 2 senders);
  ``xpevents-block`` is the same with ``overflow="block"``.
* ``official-default``: ``optimizely.Optimizely(datafile, event_dispatcher=...)``, its
  default wiring (BatchEventProcessor with its defaults, the synchronous dispatcher).
* ``official-batch100``: the same with ``BatchEventProcessor(batch_size=100)``.

The official dispatcher posts to ``event.url``; a shim hands it a copy aimed at the
collector. Measured: caller p50/p99/max of ``activate`` at 0 and 200 ms endpoint
latency (and their percentiles on a fine grid, for a CDF); end to end N impressions
(each contender in its own process, for CPU and peak RSS); the loopback sink's own
ceiling (pre-encoded 100-visitor batches from keep-alive connections); a ladder of paced
rates up to the first step with a loss (delivered/s, delivered fraction and caller p99
per offered rate); CPU per 10k delivered vs batch size; delivery under a fault mix.

Sizes: the ``XPEVENTS_BENCH_DISPATCH_*`` knobs listed in ``bench/__main__.py``
(``PARTS`` chooses the parts). ``python -m bench dispatch`` runs the latency, end to end
and fault parts (``docs/bench/dispatch.json``); ``python -m bench dispatch_curves`` the
sink ceiling, the rate ladder and the batch-size curve (``docs/bench/dispatch_curves.json``),
so each stays near two minutes.
"""

from __future__ import annotations

import http.client
import json
import logging
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from xpevents.testing import run_collector

from bench._common import (
    cdf_points,
    datafile_text,
    guard_network,
    knob,
    load_average,
    percentiles,
    table,
)
from bench._results import save
from bench._sink import run_sink


def _knob(name: str, default: str, meaning: str) -> str:
    return knob("dispatch", f"DISPATCH_{name}", default, meaning)


PARTS = _knob("PARTS", "latency,e2e,faults", "parts to run (the curves: dispatch_curves)")
LAT_N = int(_knob("LAT_N", "20000", "caller latency samples"))
E2E_N = int(_knob("E2E_N", "100000", "end-to-end activates"))
WINDOW = float(_knob("WINDOW", "10", "s the official SDK gets to deliver"))
STEP_S = float(_knob("STEP_S", "1", "s per paced step of the rate ladder"))
FAULT_N = int(_knob("FAULT_N", "10000", "activates under the fault mix"))
BATCH_N = int(_knob("BATCH_N", "30000", "activates per batch size"))
BATCH_SIZES = [int(x) for x in _knob("BATCH_SIZES", "10,50,100,500,1000", "batch sizes").split(",")]
SINK_S = float(_knob("SINK_S", "2", "s of the sink ceiling measurement"))
RESULTS: dict[str, Any] = {}
EXPERIMENT = "checkout_button_color"  # 100% traffic, no audience: every user buckets
CONTENDERS = ("xpevents", "xpevents-block", "official-default", "official-batch100")


class _ToCollector:
    """The official synchronous dispatcher, given a copy of each event aimed locally."""

    def __init__(self, url: str) -> None:
        from optimizely.event_dispatcher import EventDispatcher

        self._inner = EventDispatcher
        self._url = url
        self.stopped = False

    def dispatch_event(self, event: Any) -> None:
        from optimizely.event_builder import Event

        if self.stopped:  # the measuring window is over: drain the SDK's queue at once
            return
        self._inner.dispatch_event(
            Event(self._url, event.params, http_verb=event.http_verb, headers=event.headers)
        )


class Contender:
    """One SDK + dispatcher wiring: ``activate(user)``, ``finish(timeout)``, stats."""

    def __init__(self, name: str, base_url: str, **options: Any) -> None:
        self.name = name
        self.dispatcher: Any = None
        datafile = datafile_text()
        if name.startswith("xpevents"):
            from xpevents import Client
            from xpevents.dispatch.batch import BatchDispatcher

            if name == "xpevents-block":
                options.setdefault("overflow", "block")
            self.dispatcher = BatchDispatcher(endpoint=base_url, atexit_timeout=None, **options)
            self.client: Any = Client(datafile, event_dispatcher=self.dispatcher)
        else:
            from optimizely import optimizely
            from optimizely.event.event_processor import BatchEventProcessor

            dispatcher = self._sink = _ToCollector(base_url + "/v1/events")
            if name == "official-default":
                self.client = optimizely.Optimizely(datafile, event_dispatcher=dispatcher)
            else:
                processor = BatchEventProcessor(dispatcher, batch_size=100, start_on_init=True)
                self.client = optimizely.Optimizely(
                    datafile, event_dispatcher=dispatcher, event_processor=processor
                )
        self.activate: Callable[[str, str], Any] = self.client.activate

    def finish(self, timeout: float) -> None:
        """Flush and close within ``timeout`` seconds (the official close may hang)."""
        if self.dispatcher is not None:
            self.dispatcher.flush(timeout)
            self.client.close()
            self.dispatcher.close(1.0)
            return
        closer = threading.Thread(target=self.client.close, daemon=True)
        closer.start()
        closer.join(timeout)
        # Whatever the SDK still holds after the window is not delivered; stop sending it
        # so its thread does not keep a core busy during the next measurements.
        self._sink.stopped = True
        closer.join(30)

    def dropped(self) -> int:
        return 0 if self.dispatcher is None else self.dispatcher.stats().dropped_total


def _wait_unique(collector: Any, expected: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    last = -1
    quiet_since = time.monotonic()
    while True:
        got = int(collector.stats()["unique_events"])
        if got >= expected:
            return got
        now = time.monotonic()
        if got != last:
            last, quiet_since = got, now
        if now > deadline or now - quiet_since > max(5.0, timeout / 4):
            return got
        time.sleep(0.05)


# -- 1. caller latency ------------------------------------------------------------------


def caller_latency() -> None:
    rows, saved = [], []
    for latency in (0, 200):
        with run_collector(latency_ms=latency) as collector:
            for name in ("xpevents", "official-default", "official-batch100"):
                collector.reset()
                contender = Contender(name, collector.base_url)
                users = [(EXPERIMENT, f"user-{i}") for i in range(LAT_N)]
                perf = time.perf_counter
                samples = []
                for args in users:
                    t0 = perf()
                    contender.activate(*args)
                    samples.append(perf() - t0)
                contender.finish(5.0)
                p = percentiles(samples)
                rows.append(
                    (f"{latency} ms", name, f"{p['p50']:.1f}", f"{p['p99']:.1f}", f"{p['max']:.0f}")
                )
                saved.append(
                    {
                        "endpoint_ms": latency,
                        "contender": name,
                        "calls": LAT_N,
                        "p50_us": p["p50"],
                        "p99_us": p["p99"],
                        "max_us": p["max"],
                        "cdf_us": cdf_points(samples),
                    }
                )
    RESULTS["caller_latency"] = saved
    table(
        f"caller activate() latency, {LAT_N} calls back to back (µs)",
        ("endpoint", "contender", "p50", "p99", "max"),
        rows,
    )


# -- 2. end to end ----------------------------------------------------------------------


def e2e_child(name: str, base_url: str, n: int, window: float, batch_size: int) -> None:
    """Runs in a subprocess: N activates back to back, then deliver within ``window``."""
    guard_network()
    logging.disable(logging.CRITICAL)
    options = {"batch_size": batch_size} if batch_size else {}
    contender = Contender(name, base_url, **options)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    activate = contender.activate
    for i in range(n):
        activate(EXPERIMENT, f"user-{i}")
    produced = time.perf_counter() - t0
    contender.finish(window)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"produce_s": produced, "elapsed_s": elapsed, "cpu_s": cpu, "rss_mb": rss}
    print(json.dumps({**result, "dropped": contender.dropped()}))


def _e2e(collector: Any, name: str, n: int, window: float, batch_size: int = 0) -> dict[str, Any]:
    """One contender in a subprocess: its figures plus what the collector got."""
    collector.reset()
    started = time.perf_counter()
    argv = [sys.executable, "-m", "bench.dispatch", "e2e", name, collector.base_url]
    out = subprocess.run(
        [*argv, str(n), str(window), str(batch_size)],
        capture_output=True,
        text=True,
        timeout=window + 600,
    )
    if out.returncode != 0:
        return {"contender": name, "error": out.stderr[-300:]}
    result = json.loads(out.stdout.strip().splitlines()[-1])
    got = _wait_unique(collector, n, 10.0)
    stats = collector.stats()
    return {
        "contender": name,
        "events": n,
        "delivered": got,
        "delivered_fraction": got / n,
        "delivered_per_s": got / max(result["elapsed_s"], 1e-9),
        "requests": stats["requests"],
        "bytes": stats["bytes_received"],
        "cpu_s_per_10k_delivered": result["cpu_s"] / max(got, 1) * 10_000,
        "total_s": time.perf_counter() - started,
        **result,
    }


def end_to_end() -> None:
    saved = []
    with run_sink() as collector:
        for name in CONTENDERS:
            window = 120.0 if name.startswith("xpevents") else WINDOW
            saved.append(_e2e(collector, name, E2E_N, window))
    RESULTS["end_to_end"] = {"events": E2E_N, "official_window_s": WINDOW, "rows": saved}
    table(
        f"end to end: {E2E_N:,} activates back to back, endpoint 0 ms "
        f"(official SDK: {WINDOW:.0f} s window to deliver)",
        ("contender", "delivered/s", "delivered", "requests", "MB", "CPU s/10k", "peak RSS"),
        [
            (
                r["contender"],
                f"{r.get('delivered_per_s', 0):,.0f}",
                f"{r.get('delivered_fraction', 0):.1%}",
                r.get("requests", r.get("error", "")),
                f"{r.get('bytes', 0) / 1e6:.1f}",
                f"{r.get('cpu_s_per_10k_delivered', 0):.3f}",
                f"{r.get('rss_mb', 0):.0f} MB",
            )
            for r in saved
        ],
    )


# -- 3. the sink's own ceiling ----------------------------------------------------------------

SINK_SIZES = (100, 1000)  # visitors per request: the default batch_size, a grown batch
SINK_CONNECTIONS = 2  # BatchDispatcher's default max_concurrent_requests


def _sink_body(visitors: int) -> bytes:
    visitor = {
        "visitor_id": "user-VVVV",
        "attributes": [],
        "snapshots": [
            {
                "decisions": [{"campaign_id": "11", "experiment_id": "22", "variation_id": "33"}],
                "events": [
                    {
                        "entity_id": "11",
                        "uuid": "RRRRRRRRRR-VVVV",
                        "timestamp": 1700000000000,
                        "key": "campaign_activated",
                    }
                ],
            }
        ],
    }
    text = json.dumps(
        {
            "account_id": "1001",
            "project_id": "2002",
            "revision": "7",
            "client_name": "python-sdk",
            "client_version": "5.7.0",
            "anonymize_ip": False,
            "enrich_decisions": True,
            "visitors": [
                json.loads(json.dumps(visitor).replace("VVVV", f"{v:04d}")) for v in range(visitors)
            ],
        },
        separators=(",", ":"),
    )
    return text.encode()


def _sink_run(visitors: int, sink: str) -> dict[str, Any]:
    template = _sink_body(visitors)
    runner = run_sink if sink == "counting sink" else run_collector
    with runner() as collector:
        host, port = collector.base_url.removeprefix("http://").split(":")
        sent = [0] * SINK_CONNECTIONS
        stop = time.perf_counter() + SINK_S

        def post(slot: int) -> None:
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            headers = {"Content-Type": "application/json"}
            i = 0
            while time.perf_counter() < stop:
                body = template.replace(b"RRRRRRRRRR", f"{slot}{i:09d}".encode())
                conn.request("POST", "/v1/events", body, headers)
                conn.getresponse().read()
                i += 1
            sent[slot] = i
            conn.close()

        threads = [threading.Thread(target=post, args=(k,)) for k in range(SINK_CONNECTIONS)]
        cpu0, t0 = time.process_time(), time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        unique = _wait_unique(collector, sum(sent) * visitors, 5.0)
    return {
        "sink": sink,
        "visitors_per_request": visitors,
        "connections": SINK_CONNECTIONS,
        "requests_per_s": sum(sent) / wall,
        "visitors_per_s": unique / wall,
        "generator": "http.client keep-alive threads, pre-encoded bodies",
        "generator_cpu_share": cpu / wall,
    }


def sink_ceiling() -> None:
    """Visitors/s the loopback sinks take from keep-alive connections, pre-encoded.

    The throughput parts (end to end, the ladder, CPU per batch size) send to the
    counting sink (bench/_sink.py): the collector, which stores every event, is
    measured too, to show why.
    """
    runs = [
        _sink_run(visitors, sink)
        for sink in ("counting sink", "collector")
        for visitors in SINK_SIZES
    ]
    best = max(
        (r for r in runs if r["sink"] == "counting sink"), key=lambda r: float(r["visitors_per_s"])
    )
    RESULTS["sink_ceiling"] = {**best, "runs": runs}
    table(
        f"loopback sink ceiling: {SINK_CONNECTIONS} keep-alive connections, {SINK_S:g} s each",
        ("sink", "visitors/request", "requests/s", "visitors/s", "generator CPU (of one core)"),
        [
            (
                r["sink"],
                r["visitors_per_request"],
                f"{r['requests_per_s']:,.0f}",
                f"{r['visitors_per_s']:,.0f}",
                f"{r['generator_cpu_share']:.0%}",
            )
            for r in runs
        ],
    )


# -- 4. a ladder of paced rates -----------------------------------------------------------

LADDERS = {
    (0, "xpevents"): (10_000, 20_000, 40_000, 60_000, 80_000, 100_000, 120_000, 150_000),
    (200, "xpevents"): (2_000, 5_000, 10_000, 15_000, 20_000, 30_000, 40_000),
    (0, "official-default"): (100, 300, 700, 1_500, 3_000),
    (200, "official-default"): (5, 10, 20, 50, 100),
}


def _paced_run(collector: Any, name: str, rate: float) -> dict[str, Any]:
    collector.reset()
    contender = Contender(name, collector.base_url)
    n = max(1, int(rate * STEP_S))
    perf = time.perf_counter
    samples = []
    start = perf()
    for i in range(n):
        ahead = start + i / rate - perf()
        if ahead > 0.0005:
            time.sleep(ahead)
        t0 = perf()
        contender.activate(EXPERIMENT, f"user-{i}")
        samples.append(perf() - t0)
    paced = perf() - start
    latency_s = float(collector.control().get("latency_ms", 0)) / 1000
    contender.finish(max(5.0, 2 + latency_s * 10))
    got = _wait_unique(collector, n, 5.0)
    p = percentiles(samples)
    return {
        "offered_per_s": rate,
        "achieved_offered_per_s": n / max(paced, 1e-9),
        "events": n,
        "delivered": got,
        "delivered_fraction": got / n,
        "delivered_per_s": got / max(STEP_S, paced),
        "dropped": contender.dropped(),
        "caller_p50_us": p["p50"],
        "caller_p99_us": p["p99"],
        "lossless": got >= n and contender.dropped() == 0,
    }


def rate_ladder() -> None:
    curves, rows = [], []
    for latency in (0, 200):
        with run_sink(latency_ms=latency) as collector:
            for (at, name), ladder in LADDERS.items():
                if at != latency:
                    continue
                steps = []
                for rate in ladder:
                    steps.append(_paced_run(collector, name, rate))
                    if not steps[-1]["lossless"]:
                        break  # the point of loss: the curve ends one step past the best
                best = max((s["offered_per_s"] for s in steps if s["lossless"]), default=0)
                curves.append({"endpoint_ms": latency, "contender": name, "steps": steps})
                curves[-1]["highest_lossless_per_s"] = best
                rows.append((f"{latency} ms", name, f"{best:,.0f}" if best else f"< {ladder[0]}"))
    RESULTS["rate_ladder"] = {"step_s": STEP_S, "curves": curves}
    ceiling = RESULTS.get("sink_ceiling", {}).get("visitors_per_s")
    note = f"; sink ceiling {ceiling:,.0f} visitors/s" if ceiling else ""
    table(
        f"highest paced rate with nothing lost ({STEP_S:g} s per step, ladders{note})",
        ("endpoint", "contender", "events/s"),
        rows,
    )


# -- 5. CPU per 10k delivered vs batch size ---------------------------------------------


def batch_cpu() -> None:
    saved = []
    with run_sink() as collector:
        for size in BATCH_SIZES:
            row = _e2e(collector, "xpevents-block", BATCH_N, 120.0, batch_size=size)
            saved.append({"batch_size": size, **row})
    RESULTS["batch_cpu"] = {"events": BATCH_N, "overflow": "block", "rows": saved}
    table(
        f"CPU s per 10k delivered vs batch_size ({BATCH_N:,} activates, overflow='block')",
        ("batch_size", "CPU s/10k", "requests", "delivered"),
        [
            (
                r["batch_size"],
                f"{r.get('cpu_s_per_10k_delivered', 0):.3f}",
                r.get("requests", r.get("error", "")),
                f"{r.get('delivered_fraction', 0):.1%}",
            )
            for r in saved
        ],
    )


# -- 6. fault mix ---------------------------------------------------------------------------


def fault_mix() -> None:
    rows, saved = [], []
    faults = {"fail_rate": 0.3, "rate_429": 0.1, "retry_after": 1, "drop_rate": 0.05, "seed": 5}
    with run_collector(**faults) as collector:
        for name in ("xpevents", "official-default", "official-batch100"):
            collector.reset()
            contender = Contender(
                name,
                collector.base_url,
                **({"max_queue_events": FAULT_N} if name.startswith("xpevents") else {}),
            )
            for i in range(FAULT_N):
                contender.activate(EXPERIMENT, f"user-{i}")
                if i % 100 == 0:
                    time.sleep(0.001)  # an app doing other work, not a tight loop
            # ours finishes as soon as all is delivered; the official SDK gets WINDOW
            contender.finish(120.0 if name.startswith("xpevents") else WINDOW)
            got = _wait_unique(collector, FAULT_N, 5.0)
            rows.append((name, f"{got}/{FAULT_N}", f"{got / FAULT_N:.1%}"))
            saved.append({"contender": name, "events": FAULT_N, "delivered": got})
    RESULTS["fault_mix"] = {"faults": faults, "window_s": WINDOW, "rows": saved}
    table(
        "fault mix: 30% 500/503, 10% 429 (Retry-After 1 s), 5% dropped connections",
        ("contender", "delivered/generated", "fraction"),
        rows,
    )


SECTIONS: dict[str, Callable[[], None]] = {
    "latency": caller_latency,
    "e2e": end_to_end,
    "sink": sink_ceiling,
    "ladder": rate_ladder,
    "batch": batch_cpu,
    "faults": fault_mix,
}


def main(parts: list[str] | None = None, name: str = "dispatch") -> None:
    guard_network()
    logging.disable(logging.CRITICAL)  # the official SDK logs every failed POST to root
    print(
        f"python {sys.version.split()[0]}; xpevents under test: xpevents.Client + "
        "BatchDispatcher (defaults); official: optimizely-sdk 5.7.0"
    )
    RESULTS["load_average_at_start"] = load_average()
    seconds = RESULTS["seconds"] = {}
    for part in parts or [p.strip() for p in PARTS.split(",")]:
        started = time.perf_counter()
        SECTIONS[part]()
        seconds[part] = round(time.perf_counter() - started, 1)
    RESULTS["load_average_at_end"] = load_average()
    print(f"seconds per part: {seconds}")
    save(name, RESULTS, knobs_from=("dispatch",))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "e2e":
        batch = int(sys.argv[6]) if len(sys.argv) > 6 else 0
        e2e_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), batch)
    else:
        main()
