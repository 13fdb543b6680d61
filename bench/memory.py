"""Peak RSS with 10,000 visitors queued: xpevents vs the official SDK, each in its own process.

Each contender builds its client from the fixture datafile, then makes
``XPEVENTS_BENCH_MEMORY_EVENTS`` activates (10,000) whose events cannot leave: ours go to
a ``BatchDispatcher`` aimed at a closed loopback port (they wait for their retries in
its queue), the official SDK's sit in its ``BatchEventProcessor`` (batch size and
flush interval too large to send, queue large enough to hold them all). The figures are
the process's peak RSS (``VmHWM``) before and after queueing, so the difference is
what the queued visitors cost. The 1M-visitor disk backlog is measured by
``python -m bench spool`` (RSS with a durable backlog).
"""

from __future__ import annotations

import json
import queue
import resource
import socket
import subprocess
import sys
import time
from typing import Any

from bench._common import datafile_text, guard_network, knob, table
from bench._results import save

EVENTS = int(knob("memory", "MEMORY_EVENTS", "10000", "visitors queued"))


def _rss_mb() -> float:
    """This process's peak RSS (VmHWM: ``ru_maxrss`` would carry the parent's over exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover


def _closed_port() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def child(name: str, n: int) -> dict[str, Any]:
    guard_network()
    datafile = datafile_text()
    if name == "xpevents":
        from xpevents import BatchDispatcher, Client

        dispatcher = BatchDispatcher(
            endpoint=_closed_port(), max_queue_events=n + 1000, atexit_timeout=None
        )
        client: Any = Client(datafile, event_dispatcher=dispatcher)
        depth = lambda: dispatcher.stats().queue_depth  # noqa: E731
    else:
        from optimizely import optimizely
        from optimizely.event.event_processor import BatchEventProcessor

        class Nowhere:
            def dispatch_event(self, event: Any) -> None:  # never called: nothing is due
                raise RuntimeError("unexpected dispatch")

        events: queue.Queue[Any] = queue.Queue(maxsize=n + 1000)
        processor = BatchEventProcessor(
            Nowhere(), event_queue=events, batch_size=10 * n, flush_interval=3600
        )
        processor.start()
        client = optimizely.Optimizely(
            datafile, event_dispatcher=Nowhere(), event_processor=processor
        )
        depth = lambda: len(processor._current_batch) + events.qsize()  # noqa: E731
    client.activate("checkout_button_color", "warm-up")
    before = _rss_mb()
    for i in range(n):
        client.activate("checkout_button_color", f"user-{i}")
    time.sleep(1.0)  # let the SDK's thread move its queue into its batch
    return {"contender": name, "rss_before_mb": before, "rss_peak_mb": _rss_mb(), "queued": depth()}


def main() -> None:
    rows = []
    for name in ("official", "xpevents"):
        out = subprocess.run(
            [sys.executable, "-m", "bench.memory", "child", name, str(EVENTS)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    official, ours = rows
    save("memory", {"events": EVENTS, "rows": rows})
    table(
        f"peak RSS with {EVENTS:,} visitors queued (each contender in its own process)",
        ("contender", "queued", "RSS before", "peak RSS", "queued visitors cost"),
        [
            (
                r["contender"],
                f"{r['queued']:,}",
                f"{r['rss_before_mb']:.1f} MB",
                f"{r['rss_peak_mb']:.1f} MB",
                f"{r['rss_peak_mb'] - r['rss_before_mb']:.1f} MB",
            )
            for r in rows
        ],
    )
    print(
        f"xpevents peak - official peak: {ours['rss_peak_mb'] - official['rss_peak_mb']:+.1f} MB "
        "(target: at most +10 MB)"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]))))
    else:
        main()
