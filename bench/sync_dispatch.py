"""Synchronous dispatch: the official SDK's EventDispatcher vs DefaultEventDispatcher.

First, one POST of the same event body to one local collector, side by side in
interleaved rounds: a raw keep-alive ``http.client.HTTPConnection`` (the floor),
``httpx.Client.post``, the official ``EventDispatcher`` (requests, a new session per
event), ``DefaultEventDispatcher`` with its own client and with an ``httpx.Client``
passed in; wall p50/p99 and the client's CPU per call (``time.process_time``; the
collector runs in another process), each with its overhead over the raw POST.

Then ``activate`` timed with each synchronous dispatcher: both run under the official
``optimizely.Optimizely`` (so the same event building and processor), against one local
collector at 0 ms and at 50 ms latency, and the caller's ``activate`` is timed. The
official dispatcher posts to ``event.url``; a thin shim gives it a copy of each event
aimed at the collector (the official endpoint is never used).
Also measures what the collector sustains on loopback. Figures are saved to
docs/bench/sync_dispatch.json. Sizes: ``XPEVENTS_BENCH_SYNC_N`` [1000] activate calls,
``XPEVENTS_BENCH_SYNC_POSTS`` [400] POSTs per variant per round,
``XPEVENTS_BENCH_SYNC_ROUNDS`` [5] rounds (about 45 s in all).
"""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from xpevents import DefaultEventDispatcher, LogEvent
from xpevents.spool.envelope import encode_json
from xpevents.testing import run_collector

from bench import _results
from bench._common import datafile_text, guard_network, knob, percentiles, table

N = int(knob("sync_dispatch", "SYNC_N", "1000", "activate calls per dispatcher at 0 ms"))
"""activate calls per dispatcher at 0 ms (a tenth of it at 50 ms)."""
POSTS = int(knob("sync_dispatch", "SYNC_POSTS", "400", "POSTs per variant per round"))
"""POSTs per variant per round in the side-by-side."""
ROUNDS = int(knob("sync_dispatch", "SYNC_ROUNDS", "5", "interleaved rounds"))
"""Interleaved rounds in the side-by-side."""


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


def _event_params(i: int) -> dict[str, Any]:
    return {
        "account_id": "1",
        "project_id": "2",
        "revision": "3",
        "client_name": "bench",
        "client_version": "0",
        "anonymize_ip": True,
        "enrich_decisions": True,
        "visitors": [
            {
                "visitor_id": f"user-{i}",
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
        ],
    }


def _post_variants(url: str, base_url: str, stack: list[Any]) -> dict[str, Callable[[], object]]:
    """name -> one POST of the same body to ``url`` (what each variant does per event)."""
    from optimizely.event_builder import Event
    from optimizely.event_dispatcher import EventDispatcher

    parts = urlsplit(url)
    params = _event_params(0)
    body = encode_json(params)
    headers = {"Content-Type": "application/json"}
    raw = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
    direct = httpx.Client()
    ours = DefaultEventDispatcher(endpoint=base_url)
    theirs_client = httpx.Client()
    ours_with_client = DefaultEventDispatcher(endpoint=base_url, http_client=theirs_client)
    stack += [raw, direct, ours, ours_with_client, theirs_client]
    event = LogEvent(url, params)
    official = Event(url, params, http_verb="POST", headers=headers)

    def raw_post() -> None:
        raw.request("POST", parts.path, body, headers)
        raw.getresponse().read()

    return {
        "raw http.client (keep-alive)": raw_post,
        "httpx.Client.post": lambda: direct.post(url, content=body, headers=headers),
        "optimizely-sdk EventDispatcher": lambda: EventDispatcher.dispatch_event(official),
        "xpevents Default": lambda: ours.dispatch_event(event),
        "xpevents Default, http_client given": lambda: ours_with_client.dispatch_event(event),
    }


def _side_by_side() -> dict[str, Any]:
    stack: list[Any] = []
    load_before = os.getloadavg()
    with run_collector() as collector:
        variants = _post_variants(collector.events_url, collector.base_url, stack)
        wall: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        perf, process = time.perf_counter, time.process_time
        try:
            for post in variants.values():  # connections up, caches warm
                for _ in range(20):
                    post()
            for _ in range(ROUNDS):
                for name, post in variants.items():
                    walls, cpus = wall[name], cpu[name]
                    for _ in range(POSTS):
                        c0 = process()
                        t0 = perf()
                        post()
                        walls.append(perf() - t0)
                        cpus.append(process() - c0)
        finally:
            for thing in stack:
                thing.close()
    figures = {name: percentiles(samples) for name, samples in wall.items()}
    for name, samples in cpu.items():
        figures[name]["cpu_mean"] = percentiles(samples)["mean"]
    floor = figures["raw http.client (keep-alive)"]
    for p in figures.values():
        for key in ("p50", "p99", "cpu_mean"):
            p[f"over_raw_{key}"] = p[key] - floor[key]
    rows = [
        (
            name,
            f"{p['p50']:.0f}",
            f"{p['p99']:.0f}",
            f"{p['cpu_mean']:.0f}",
            f"{p['over_raw_p50']:+.0f}",
            f"{p['over_raw_p99']:+.0f}",
            f"{p['over_raw_cpu_mean']:+.0f}",
        )
        for name, p in figures.items()
    ]
    load_after = os.getloadavg()
    table(
        f"one POST to the loopback collector, {ROUNDS} interleaved rounds x {POSTS} "
        f"(µs; load {load_before[0]:.2f} -> {load_after[0]:.2f})",
        ("client", "p50", "p99", "cpu/call", "+p50 vs raw", "+p99 vs raw", "+cpu vs raw"),
        rows,
    )
    return {
        "posts_per_round": POSTS,
        "rounds": ROUNDS,
        "load_average_1m": [load_before[0], load_after[0]],
        "variants": figures,
    }


def main() -> None:
    guard_network()
    results: dict[str, Any] = {"post_side_by_side": _side_by_side()}
    rows = []
    for latency in (0, 50):
        n = N if latency == 0 else max(50, N // 10)
        with run_collector(latency_ms=latency) as collector:
            official = _activate_latency(OfficialToCollector(collector.events_url), n)
            with DefaultEventDispatcher(endpoint=collector.base_url) as ours:
                mine = _activate_latency(ours, n)
            delivered = collector.stats()["unique_events"]
        results[f"activate_{latency}ms"] = {"calls": n, "official": official, "ours": mine}
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
        results[f"collector_{per_request}_per_request"] = {
            "requests_per_s": rps,
            "visitors_per_s": vps,
        }
    table(
        "collector on loopback, one keep-alive client",
        ("visitors/request", "requests", "requests/s", "visitors/s"),
        trows,
    )
    _results.save("sync_dispatch", results)


if __name__ == "__main__":
    main()
