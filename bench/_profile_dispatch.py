"""200,000 activates into a BatchDispatcher (``overflow="block"``) sent to the counting sink.

The workload behind docs/bench/dispatch-e2e-profile.svg::

    py-spy record -o docs/bench/dispatch-e2e-profile.svg -r 200 -- \\
        .venv/bin/python -m bench._profile_dispatch

Prints the wall time and the process's CPU seconds per 10,000 delivered events.
"""

from __future__ import annotations

import time

from bench._common import datafile_text, guard_network
from bench._sink import run_sink


def main(events: int = 200_000) -> None:
    guard_network()
    from xpevents import BatchDispatcher, Client

    with run_sink() as sink:
        dispatcher = BatchDispatcher(endpoint=sink.base_url, overflow="block", atexit_timeout=None)
        client = Client(datafile_text(), event_dispatcher=dispatcher)
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(events):
            client.activate("checkout_button_color", f"user-{i}")
        dispatcher.flush(60)
        delivered = dispatcher.stats().delivered
        cpu_per_10k = (time.process_time() - cpu) / max(delivered, 1) * 10_000
        print(f"wall {time.perf_counter() - wall:.2f} s, CPU {cpu_per_10k:.3f} s per 10k delivered")
        client.close()


if __name__ == "__main__":
    main()
