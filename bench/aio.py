"""AsyncDispatcher in a running Starlette app: event-loop lag under load, caller cost.

``python -m bench aio`` (or ``python -m bench.aio``). Loopback only.

1. Event-loop lag. A Starlette app runs under uvicorn in a child process with a
   ticker task (``await asyncio.sleep(0.001)`` in a loop, lag = how late it wakes).
   The parent drives ``POST /activate`` with an ``httpx.AsyncClient`` (1, then 16
   concurrent connections) for a few seconds; each request builds one impression and hands it to
   the dispatcher. Variants: no dispatch (the app's own lag), ``AsyncDispatcher``
   (senders are tasks on the loop), ``BatchDispatcher`` (sender threads in the same
   process). Reported: requests/s, lag p50/p99/max, and what the collector received.
2. Caller cost of ``dispatch_event`` (µs p50/p99) for ``AsyncDispatcher`` (called on
   the loop) and ``BatchDispatcher``, in this process against the collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx

from bench._common import guard_network, percentiles, table

LOAD_SECONDS = 4.0
WARMUP_SECONDS = 0.5
CONCURRENCIES = (1, 16)
CALLS = 20_000


def make_event(n: int) -> Any:
    from xpevents import LogEvent

    params = {
        "account_id": "1001",
        "project_id": "2002",
        "revision": "7",
        "client_name": "python-sdk",
        "client_version": "5.7.0",
        "anonymize_ip": False,
        "enrich_decisions": True,
        "visitors": [
            {
                "visitor_id": f"user-{n}",
                "attributes": [],
                "snapshots": [
                    {
                        "decisions": [
                            {"campaign_id": "11", "experiment_id": "22", "variation_id": "33"}
                        ],
                        "events": [
                            {
                                "entity_id": "11",
                                "uuid": str(uuid.uuid4()),
                                "timestamp": int(time.time() * 1000),
                                "key": "campaign_activated",
                            }
                        ],
                    }
                ],
            }
        ],
    }
    return LogEvent("https://logx.optimizely.com/v1/events", params)


# -- the child: the app under test --------------------------------------------------------


def serve(variant: str, collector_url: str) -> None:  # noqa: C901 - one app: its routes are closures over one dispatcher
    """Run the app (child process); print the port, serve until terminated."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from xpevents import AsyncDispatcher, BatchDispatcher

    guard_network()
    dispatcher: Any = None
    if variant == "async":
        dispatcher = AsyncDispatcher(endpoint=collector_url, max_queue_events=200_000)
    elif variant == "batch":
        dispatcher = BatchDispatcher(endpoint=collector_url, max_queue_events=200_000)
    lags: list[float] = []
    counter = iter(range(10**12))

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + 0.001
            await asyncio.sleep(0.001)
            lags.append(loop.time() - expected)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(ticker())
        if isinstance(dispatcher, AsyncDispatcher):
            async with dispatcher:
                yield
        else:
            yield
            if dispatcher is not None:
                dispatcher.close(10)
        task.cancel()

    async def activate(request: Request) -> Response:
        ev = make_event(next(counter))
        if dispatcher is not None:
            dispatcher.dispatch_event(ev)
        return Response(status_code=204)

    async def lag(request: Request) -> Response:
        taken = list(lags)
        lags.clear()
        stats: dict[str, Any] = {}
        if dispatcher is not None:
            if isinstance(dispatcher, AsyncDispatcher):
                await dispatcher.flush(10)
            else:
                await asyncio.to_thread(dispatcher.flush, 10)
            stats = dispatcher.stats().as_dict()
        return JSONResponse({"lag": percentiles(taken) if taken else {}, "stats": stats})

    async def reset(request: Request) -> Response:
        lags.clear()
        return Response(status_code=204)

    app = Starlette(
        routes=[
            Route("/activate", activate, methods=["POST"]),
            Route("/lag", lag, methods=["GET"]),
            Route("/reset", reset, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        print(server.servers[0].sockets[0].getsockname()[1], flush=True)
        await task

    asyncio.run(run())


# -- the parent: load and measurements ------------------------------------------------------


async def drive(base: str, concurrency: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=30) as http:
        done = 0
        stop_at = time.monotonic() + WARMUP_SECONDS

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < stop_at:
                response = await http.post("/activate")
                assert response.status_code == 204
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await http.post("/reset")
        done = 0
        started = time.monotonic()
        stop_at = started + LOAD_SECONDS
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
        result: dict[str, Any] = (await http.get("/lag")).json()
        result["rps"] = done / elapsed
        return result


def lag_run(variant: str, collector: Any, concurrency: int) -> dict[str, Any]:
    env = dict(os.environ)
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.aio", "--serve", variant, collector.base_url],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        collector.reset()
        result = asyncio.run(drive(f"http://127.0.0.1:{port}", concurrency))
        result["received"] = collector.stats()["unique_events"]
        return result
    finally:
        child.terminate()
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)


def caller_cost(collector: Any) -> dict[str, dict[str, float]]:
    from xpevents import AsyncDispatcher, BatchDispatcher

    events = [make_event(i) for i in range(CALLS)]
    perf = time.perf_counter
    out: dict[str, dict[str, float]] = {}

    async def on_loop() -> list[float]:
        samples = []
        async with AsyncDispatcher(endpoint=collector.base_url, max_queue_events=100_000) as d:
            for index, ev in enumerate(events):
                t0 = perf()
                d.dispatch_event(ev)
                samples.append(perf() - t0)
                if index % 100 == 99:
                    await asyncio.sleep(0)  # the app yields to the loop now and then
            await d.flush(30)
        return samples

    out["AsyncDispatcher (on the loop)"] = percentiles(asyncio.run(on_loop()))
    with BatchDispatcher(endpoint=collector.base_url, max_queue_events=100_000) as bd:
        samples = []
        for ev in events:
            t0 = perf()
            bd.dispatch_event(ev)
            samples.append(perf() - t0)
        bd.flush(30)
    out["BatchDispatcher"] = percentiles(samples)
    return out


def main() -> None:
    from xpevents.testing import run_collector

    guard_network()
    with run_collector() as collector:
        for concurrency in CONCURRENCIES:
            rows = []
            for variant, label in (
                ("none", "no dispatch (app alone)"),
                ("async", "AsyncDispatcher"),
                ("batch", "BatchDispatcher (threads)"),
            ):
                result = lag_run(variant, collector, concurrency)
                lag = result["lag"]
                stats = result.get("stats") or {}
                rows.append(
                    (
                        label,
                        f"{result['rps']:.0f}",
                        f"{lag['p50'] / 1000:.3f}",
                        f"{lag['p99'] / 1000:.3f}",
                        f"{lag['max'] / 1000:.2f}",
                        stats.get("delivered", "-"),
                        sum((stats.get("dropped") or {}).values()),
                    )
                )
            table(
                f"Event-loop lag in a Starlette app under load ({concurrency} connection(s), "
                f"{LOAD_SECONDS:.0f} s, 1 ms ticker)",
                (
                    "variant",
                    "req/s",
                    "lag p50 ms",
                    "lag p99 ms",
                    "lag max ms",
                    "delivered",
                    "dropped",
                ),
                rows,
            )
        costs = caller_cost(collector)
        table(
            f"dispatch_event caller cost ({CALLS} one-visitor events)",
            ("dispatcher", "p50 µs", "p99 µs", "max µs"),
            [
                (name, f"{p['p50']:.1f}", f"{p['p99']:.1f}", f"{p['max']:.0f}")
                for name, p in costs.items()
            ],
        )


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        main()
