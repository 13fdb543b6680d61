"""The official SDK's per-event ``uuid.uuid4()`` vs ``xpevents.official.use_fast_uuids()``.

A 100,000-call ``activate`` burst through ``Optimizely(...,
event_processor=ForwardingEventProcessor(BatchDispatcher()))`` into a local collector,
alternating the SDK's own uuids and ours, 3 runs each. Each run is its own process so
that nothing (a patched module, a leftover thread) carries over.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from bench._common import datafile_text, guard_network, knob, load_average, table
from bench._results import save

BURST = int(knob("official_uuid", "OFFICIAL_UUID_N", "100000", "activates per burst"))
RUNS = int(knob("official_uuid", "OFFICIAL_UUID_RUNS", "3", "runs per mode"))


def child(mode: str, n: int) -> None:
    guard_network()
    from optimizely import optimizely
    from optimizely.event.event_processor import ForwardingEventProcessor

    from xpevents import BatchDispatcher
    from xpevents.official import use_fast_uuids
    from xpevents.testing import run_collector

    if mode == "xpevents uuids":
        use_fast_uuids()
    with run_collector() as collector:
        dispatcher = BatchDispatcher(endpoint=collector.base_url, atexit_timeout=None)
        sdk = optimizely.Optimizely(
            datafile_text(),
            event_dispatcher=dispatcher,
            event_processor=ForwardingEventProcessor(dispatcher),
        )
        started = time.perf_counter()
        for i in range(n):
            sdk.activate("checkout_button_color", f"user-{i}")
        elapsed = time.perf_counter() - started
        stats = dispatcher.stats()
        print(
            json.dumps(
                {
                    "seconds": elapsed,
                    "delivered_during_burst": stats.delivered,
                    "dropped": stats.dropped_total,
                }
            )
        )
        dispatcher.close(30)
        sdk.close()


def main() -> None:
    guard_network()
    rows = []
    saved = []
    started = load_average()
    for run in range(RUNS):
        for mode in ("optimizely uuids", "xpevents uuids"):
            out = subprocess.run(
                [sys.executable, "-m", "bench.official_uuid", mode, str(BURST)],
                capture_output=True,
                text=True,
                timeout=300,
                check=True,
            )
            data = json.loads(out.stdout.strip().splitlines()[-1])
            saved.append({"run": run + 1, "uuids": mode, "burst": BURST, **data})
            rows.append(
                (
                    run + 1,
                    mode,
                    f"{data['seconds']:.2f}",
                    f"{data['delivered_during_burst']:,}",
                    f"{data['delivered_during_burst'] / BURST:.1%}",
                    f"{data['dropped']:,}",
                )
            )
    table(
        f"{BURST:,}-call activate burst, official SDK + "
        "ForwardingEventProcessor(BatchDispatcher())",
        ("run", "uuids", "burst s", "delivered", "fraction", "dropped (counted)"),
        rows,
    )
    save("official_uuid", {"runs": saved, "load_average_at_start": started})


if __name__ == "__main__":
    child(sys.argv[1], int(sys.argv[2]))
