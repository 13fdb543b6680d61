"""Synchronous dispatch: the official SDK's EventDispatcher vs DefaultEventDispatcher.

Both run under the official ``optimizely.Optimizely`` (so the same event building and
processor), against one local collector at 0 ms and at 50 ms latency, and the caller's
``activate`` is timed. The official dispatcher posts to ``event.url``; a thin shim gives
it a copy of each event aimed at the collector (the official endpoint is never used).
Also measures what the collector sustains on loopback.
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx

from xpevents import DefaultEventDispatcher
from xpevents.testing import run_collector

from bench._common import datafile_text, guard_network, percentiles, table

N = int(os.environ.get("BENCH_SYNC_N", "1000"))


class OfficialToCollector:
    """The official synchronous dispatcher, given a copy of each event aimed locally."""

    def __init__(self, url: str) -> None:
        from optimizely.event_dispatcher import EventDispatcher

        self._inner = EventDispatcher
        self._url = url

    def dispatch_event(self, event: Any) -> None:
        from optimizely.event_builder import Event

        copy = Event(self._url, event.params, http_verb=event.http_verb, headers=event.headers)
        self._inner.dispatch_event(copy)


def _activate_latency(dispatcher: Any, n: int) -> dict[str, float]:
    from optimizely import optimizely
    from optimizely.event.event_processor import ForwardingEventProcessor

    # ForwardingEventProcessor: the dispatcher runs in the caller's thread, as in the
    # seed's synchronous wiring (the default Optimizely() wiring queues to a thread).
    sdk = optimizely.Optimizely(
        datafile_text(),
        event_dispatcher=dispatcher,
        event_processor=ForwardingEventProcessor(dispatcher),
    )
    samples = []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            sdk.activate("checkout_button_color", f"user-{i}")
            samples.append(time.perf_counter() - t0)
    finally:
        sdk.close()
    return percentiles(samples)


def _collector_throughput(visitors_per_request: int, requests: int) -> tuple[float, float]:
    import json

    body = json.dumps(
        {
            "account_id": "1",
            "project_id": "2",
            "revision": "3",
            "client_name": "bench",
            "client_version": "0",
            "anonymize_ip": True,
            "enrich_decisions": True,
            "visitors": [
                {
                    "visitor_id": f"u{i}",
                    "attributes": [],
                    "snapshots": [
                        {
                            "decisions": [],
                            "events": [
                                {
                                    "entity_id": "1",
                                    "uuid": f"{i}",
                                    "key": "campaign_activated",
                                    "timestamp": 1,
                                }
                            ],
                        }
                    ],
                }
                for i in range(visitors_per_request)
            ],
        }
    ).encode()
    with run_collector() as collector, httpx.Client(trust_env=False) as http:
        headers = {"Content-Type": "application/json"}
        t0 = time.perf_counter()
        for _ in range(requests):
            http.post(collector.events_url, content=body, headers=headers)
        elapsed = time.perf_counter() - t0
    return requests / elapsed, requests * visitors_per_request / elapsed


def main() -> None:
    guard_network()
    rows = []
    for latency in (0, 50):
        n = N if latency == 0 else max(50, N // 10)
        with run_collector(latency_ms=latency) as collector:
            official = _activate_latency(OfficialToCollector(collector.events_url), n)
            with DefaultEventDispatcher(endpoint=collector.base_url) as ours:
                mine = _activate_latency(ours, n)
            delivered = collector.stats()["unique_events"]
        for name, p in (("optimizely-sdk EventDispatcher", official), ("xpevents Default", mine)):
            rows.append(
                (f"{latency} ms", name, n, f"{p['p50']:.0f}", f"{p['p99']:.0f}", f"{p['max']:.0f}")
            )
        rows.append(
            (
                f"{latency} ms",
                "ratio official/ours",
                "",
                f"{official['p50'] / mine['p50']:.1f}x",
                f"{official['p99'] / mine['p99']:.1f}x",
                f"(collector holds {delivered})",
            )
        )
    table(
        "activate with a synchronous dispatcher (µs per call, official Optimizely client)",
        ("endpoint", "dispatcher", "calls", "p50", "p99", "max"),
        rows,
    )
    trows = []
    for per_request, requests in ((1, 2000), (100, 300)):
        rps, vps = _collector_throughput(per_request, requests)
        trows.append((per_request, requests, f"{rps:,.0f}", f"{vps:,.0f}"))
    table(
        "collector on loopback, one keep-alive client",
        ("visitors/request", "requests", "requests/s", "visitors/s"),
        trows,
    )


if __name__ == "__main__":
    main()
