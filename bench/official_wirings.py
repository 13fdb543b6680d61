"""The official optimizely-sdk 5.7.0 with xpevents' BatchDispatcher: which wiring?

Two wirings of ``optimizely.Optimizely`` in front of ``BatchDispatcher`` (defaults:
batch_size 100, flush_interval 1 s, max_queue_events 10,000, 2 senders):

* ``default``: ``Optimizely(datafile, event_dispatcher=bd)``: the SDK's own
  BatchEventProcessor (queue of 1,000, batch_size 1, its own thread) hands events to ours;
* ``forwarding``: ``Optimizely(datafile, event_dispatcher=bd,
  event_processor=ForwardingEventProcessor(bd))``: the caller hands each event to our
  queue; ours is the only queue.

For each wiring, at endpoint latency 0 and 200 ms (the local collector's
``latency_ms``; nothing leaves the machine), each run in its own process:

* ``burst``: N ``activate`` calls back to back;
* ``paced``: ``activate`` at a steady rate (``time.sleep`` to each call's slot).

Reported: caller p50/p99 of ``activate`` (µs), delivered fraction (unique events at
the collector / calls), where the rest went (lost in the SDK's queue, dropped by ours),
CPU seconds of the producing process per 10k delivered, requests made.

Sizes (environment): XPEVENTS_BENCH_OFFICIAL_BURST_N (100000), XPEVENTS_BENCH_OFFICIAL_RATE
(5000 per s), XPEVENTS_BENCH_OFFICIAL_PACED_S (4 s), XPEVENTS_BENCH_OFFICIAL_WINDOW (s to
deliver after the calls, 30); figures saved to docs/bench/official_wirings.json.
``python -m bench official_wirings`` (about 2 minutes on 2 cores).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from typing import Any

from xpevents.testing import CollectorHandle, run_collector

from bench._common import datafile_text, guard_network, knob, load_average, percentiles, table
from bench._results import save

BURST_N = int(knob("official_wirings", "OFFICIAL_BURST_N", "100000", "burst activates"))
RATE = float(knob("official_wirings", "OFFICIAL_RATE", "5000", "paced calls/s"))
PACED_S = float(knob("official_wirings", "OFFICIAL_PACED_S", "4", "s of the paced run"))
WINDOW = float(knob("official_wirings", "OFFICIAL_WINDOW", "30", "s to deliver after"))
EXPERIMENT = "checkout_button_color"  # 100% traffic, no audience: every user buckets
WIRINGS = ("default", "forwarding")


def build(wiring: str, base_url: str) -> tuple[Any, Any]:
    """(sdk, dispatcher) for one wiring, sending to ``base_url``."""
    from optimizely import optimizely
    from optimizely.event.event_processor import ForwardingEventProcessor

    from xpevents.dispatch.batch import BatchDispatcher

    dispatcher = BatchDispatcher(endpoint=base_url, atexit_timeout=None)
    if wiring == "default":
        sdk = optimizely.Optimizely(datafile_text(), event_dispatcher=dispatcher)
    else:
        sdk = optimizely.Optimizely(
            datafile_text(),
            event_dispatcher=dispatcher,
            event_processor=ForwardingEventProcessor(dispatcher),
        )
    return sdk, dispatcher


def child(wiring: str, mode: str, base_url: str, n: int, rate: float, window: float) -> None:
    """Runs in a subprocess: the calls, then deliver within ``window``; prints JSON."""
    guard_network()
    logging.disable(logging.CRITICAL)  # the official processor logs every queue-full drop
    sdk, dispatcher = build(wiring, base_url)
    activate = sdk.activate
    perf = time.perf_counter
    samples = [0.0] * n
    cpu0 = time.process_time()
    start = perf()
    if mode == "burst":
        for i in range(n):
            t0 = perf()
            activate(EXPERIMENT, f"user-{i}")
            samples[i] = perf() - t0
    else:
        interval = 1.0 / rate
        for i in range(n):
            ahead = start + i * interval - perf()
            if ahead > 0:
                time.sleep(ahead)
            t0 = perf()
            activate(EXPERIMENT, f"user-{i}")
            samples[i] = perf() - t0
    produced = perf() - start
    # shutdown in the documented order: the SDK first (its processor hands over what it
    # holds), then ours
    deadline = time.monotonic() + window
    if wiring == "forwarding":
        dispatcher.flush(window)
        sdk.close()
    else:
        sdk.close()  # joins its thread for at most 5 s (timeout_interval)
        dispatcher.flush(max(0.1, deadline - time.monotonic()))
    handed = dispatcher.stats().visitors
    outcome = dispatcher.close(1.0)
    cpu = time.process_time() - cpu0
    stats = dispatcher.stats()
    p = percentiles(samples)
    print(
        json.dumps(
            {
                "p50": p["p50"],
                "p99": p["p99"],
                "produce_s": produced,
                "elapsed_s": perf() - start,
                "cpu_s": cpu,
                "handed": handed,
                "dropped": stats.dropped_total,
                "pending": outcome.pending,
            }
        )
    )


def _settled(collector: CollectorHandle, expected: int, timeout: float) -> dict[str, Any]:
    """Collector stats once ``expected`` arrived or nothing new came for 2 s."""
    deadline = time.monotonic() + timeout
    last, quiet_since = -1, time.monotonic()
    while True:
        stats = collector.stats()
        got = int(stats["unique_events"])
        now = time.monotonic()
        if got != last:
            last, quiet_since = got, now
        if got >= expected or now > deadline or now - quiet_since > 2.0:
            return stats
        time.sleep(0.05)


def run_one(collector: CollectorHandle, wiring: str, mode: str) -> dict[str, Any]:
    collector.reset()
    n = BURST_N if mode == "burst" else max(1, int(RATE * PACED_S))
    command = [sys.executable, "-m", "bench.official_wirings", "child", wiring, mode]
    command += [collector.base_url, str(n), str(RATE), str(WINDOW)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=WINDOW + 600)
    if out.returncode != 0:
        raise RuntimeError(f"{wiring}/{mode} failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    stats = _settled(collector, n, 10.0)
    result.update(n=n, delivered=int(stats["unique_events"]), requests=int(stats["requests"]))
    return result


def main() -> None:
    guard_network()
    logging.disable(logging.CRITICAL)
    print(
        f"python {sys.version.split()[0]}; optimizely-sdk 5.7.0 + xpevents BatchDispatcher "
        f"(defaults); burst {BURST_N:,} calls; paced {RATE:,.0f}/s for {PACED_S:g} s"
    )
    rows = []
    saved = []
    started = load_average()
    for latency in (0, 200):
        with run_collector(latency_ms=latency) as collector:
            for mode in ("burst", "paced"):
                for wiring in WIRINGS:
                    r = run_one(collector, wiring, mode)
                    saved.append({"endpoint_ms": latency, "run": mode, "wiring": wiring, **r})
                    delivered = r["delivered"]
                    rows.append(
                        (
                            f"{latency} ms",
                            mode,
                            wiring,
                            f"{r['p50']:.1f}",
                            f"{r['p99']:.1f}",
                            f"{delivered:,}/{r['n']:,}",
                            f"{delivered / r['n']:.1%}",
                            f"{r['n'] - r['handed']:,}",
                            f"{r['dropped']:,}",
                            f"{r['cpu_s'] / max(delivered, 1) * 10_000:.2f}",
                            f"{r['requests']:,}",
                            f"{r['produce_s']:.1f}/{r['elapsed_s']:.1f}",
                        )
                    )
                    print(f"  done: {latency} ms {mode} {wiring}", flush=True)
    table(
        "official SDK wirings in front of BatchDispatcher",
        (
            "endpoint",
            "run",
            "wiring",
            "p50 µs",
            "p99 µs",
            "delivered",
            "fraction",
            "lost in SDK queue",
            "dropped by ours",
            "CPU s/10k delivered",
            "requests",
            "calls/total s",
        ),
        rows,
    )
    save("official_wirings", {"rows": saved, "load_average_at_start": started})


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        _, _, wiring, mode, url, n, rate, window = sys.argv
        child(wiring, mode, url, int(n), float(rate), float(window))
    else:
        main()
