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
latency; end to end N impressions (each contender in its own process, for CPU and
peak RSS); the highest paced rate with nothing lost; delivery under a fault mix.

Sizes (environment): BENCH_DISPATCH_LAT_N (latency samples, 20000),
BENCH_DISPATCH_E2E_N (200000), BENCH_DISPATCH_WINDOW (s the official SDK gets to
deliver, 30), BENCH_DISPATCH_STEP_S (s per paced step, 2), BENCH_DISPATCH_FAULT_N
(20000). ``python -m bench dispatch``.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from xpevents.testing import CollectorHandle, run_collector

from bench._common import datafile_text, guard_network, percentiles, table

LAT_N = int(os.environ.get("BENCH_DISPATCH_LAT_N", "20000"))
E2E_N = int(os.environ.get("BENCH_DISPATCH_E2E_N", "200000"))
WINDOW = float(os.environ.get("BENCH_DISPATCH_WINDOW", "30"))
STEP_S = float(os.environ.get("BENCH_DISPATCH_STEP_S", "2"))
FAULT_N = int(os.environ.get("BENCH_DISPATCH_FAULT_N", "20000"))
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


def _wait_unique(collector: CollectorHandle, expected: int, timeout: float) -> int:
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
    rows = []
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
                    (
                        f"{latency} ms",
                        name,
                        f"{p['p50']:.1f}",
                        f"{p['p99']:.1f}",
                        f"{p['max']:.0f}",
                    )
                )
    table(
        f"caller activate() latency, {LAT_N} calls back to back (µs)",
        ("endpoint", "contender", "p50", "p99", "max"),
        rows,
    )


# -- 2. end to end ----------------------------------------------------------------------


def e2e_child(name: str, base_url: str, n: int, window: float) -> None:
    """Runs in a subprocess: N activates back to back, then deliver within ``window``."""
    guard_network()
    logging.disable(logging.CRITICAL)
    contender = Contender(name, base_url)
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
    print(
        json.dumps(
            {
                "produce_s": produced,
                "elapsed_s": elapsed,
                "cpu_s": cpu,
                "rss_mb": rss,
                "dropped": contender.dropped(),
            }
        )
    )


def end_to_end() -> None:
    rows = []
    with run_collector() as collector:
        for name in CONTENDERS:
            collector.reset()
            window = 120.0 if name.startswith("xpevents") else WINDOW
            started = time.perf_counter()
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.dispatch",
                    "e2e",
                    name,
                    collector.base_url,
                    str(E2E_N),
                    str(window),
                ],
                capture_output=True,
                text=True,
                timeout=window + 600,
            )
            if out.returncode != 0:
                rows.append((name, "error", out.stderr[-200:], "", "", "", "", ""))
                continue
            result = json.loads(out.stdout.strip().splitlines()[-1])
            got = _wait_unique(collector, E2E_N, 10.0)
            total = time.perf_counter() - started
            stats = collector.stats()
            delivered = max(got, 1)
            rows.append(
                (
                    name,
                    f"{got / max(result['elapsed_s'], 1e-9):,.0f}",
                    f"{got / E2E_N:.1%}",
                    stats["requests"],
                    f"{stats['bytes_received'] / 1e6:.1f} MB",
                    f"{result['cpu_s'] / delivered * 10_000:.3f}",
                    f"{result['rss_mb']:.0f} MB",
                    f"{result['produce_s']:.1f}/{total:.1f}",
                )
            )
    table(
        f"end to end: {E2E_N:,} activates back to back, endpoint 0 ms "
        f"(official SDK: {WINDOW:.0f} s window to deliver)",
        (
            "contender",
            "delivered/s",
            "delivered",
            "requests",
            "bytes",
            "CPU s/10k delivered",
            "peak RSS",
            "produce/total s",
        ),
        rows,
    )


# -- 3. highest steady rate -----------------------------------------------------------------


def _paced_run(collector: CollectorHandle, name: str, rate: float) -> bool:
    collector.reset()
    contender = Contender(name, collector.base_url)
    n = max(1, int(rate * STEP_S))
    start = time.perf_counter()
    for i in range(n):
        target = start + i / rate
        ahead = target - time.perf_counter()
        if ahead > 0.0005:
            time.sleep(ahead)
        contender.activate(EXPERIMENT, f"user-{i}")
    latency_s = float(collector.control().get("latency_ms", 0)) / 1000
    contender.finish(max(5.0, 2 + latency_s * 10))
    got = _wait_unique(collector, n, 5.0)
    return got >= n and contender.dropped() == 0


def steady_rate() -> None:
    ladders = {
        "xpevents": (1_000, 5_000, 10_000, 20_000, 40_000, 50_000, 60_000, 80_000),
        "official-default": (5, 20, 100, 300, 700, 1_500),
        "official-batch100": (5, 20, 100, 300, 700, 1_500, 5_000),
    }
    rows = []
    for latency in (0, 200):
        with run_collector(latency_ms=latency) as collector:
            for name, ladder in ladders.items():
                best = 0.0
                for rate in ladder:
                    if not _paced_run(collector, name, rate):
                        break
                    best = rate
                rows.append((f"{latency} ms", name, f"{best:,.0f}" if best else f"< {ladder[0]}"))
    table(
        f"highest paced rate with nothing lost ({STEP_S:g} s per step; ladders, not a search)",
        ("endpoint", "contender", "events/s"),
        rows,
    )


# -- 4. fault mix ---------------------------------------------------------------------------


def fault_mix() -> None:
    rows = []
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
            contender.finish(WINDOW)
            got = _wait_unique(collector, FAULT_N, 5.0)
            rows.append((name, f"{got}/{FAULT_N}", f"{got / FAULT_N:.1%}"))
    table(
        "fault mix: 30% 500/503, 10% 429 (Retry-After 1 s), 5% dropped connections",
        ("contender", "delivered/generated", "fraction"),
        rows,
    )


def main() -> None:
    guard_network()
    logging.disable(logging.CRITICAL)  # the official SDK logs every failed POST to root
    print(
        f"python {sys.version.split()[0]}; xpevents under test: xpevents.Client + "
        "BatchDispatcher (defaults); official: optimizely-sdk 5.7.0"
    )
    caller_latency()
    end_to_end()
    steady_rate()
    fault_mix()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "e2e":
        e2e_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    else:
        main()
