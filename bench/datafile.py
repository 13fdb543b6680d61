"""Datafiles by SDK key: what polling, swapping and the relay's cache cost.

1. Decisions while the datafile is swapped every 100 ms vs never: ``client.decide``
   p50/p99 in the main thread, the client following a PollingConfigManager (interval
   50 ms) on a loopback collector whose datafile is replaced (or not) every 100 ms.
   Target: within 10 %.
2. Poll cost per 304 cycle: ``PollingConfigManager.poll_now()`` against an unchanged
   datafile (wall time and CPU time per cycle).
3. Time from a change to decisions using it, with a 100 ms and a 1 s interval
   (expected about half an interval plus a fetch on average, at most an interval).
4. The relay's datafile cache: ``GET /datafiles/KEY.json`` requests/s and p50/p99 from
   10 httpx clients (threads) against ``xpevents relay`` (its own process).
5. PHP per-request datafile cost: ``examples/php/fetch_datafile.php`` (the PHP SDK's
   fetch, a new manager per request) through the relay's cache vs straight from a
   local CDN stand-in that answers in 50 ms.

``python -m bench datafile`` (``XPEVENTS_BENCH_DATAFILE_SECONDS``, default 3).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Any

import httpx

from xpevents import Client
from xpevents.collector import Collector, CollectorServer
from xpevents.config import PollingConfigManager
from xpevents.relay.testing import run_relay
from xpevents.testing import run_collector

from bench._common import ROOT, datafile_dict, guard_network, knob, percentiles, table

SECONDS = float(knob("datafile", "DATAFILE_SECONDS", "3", "s per measurement"))
KEY = "BenchKey"
PHP_SCRIPT = ROOT / "examples" / "php" / "fetch_datafile.php"


class _Null:
    def dispatch_event(self, event: Any) -> None:
        pass


def _revision(n: int, *, flipped: bool = False) -> bytes:
    data = datafile_dict()
    data["revision"] = str(n)
    if flipped:
        for experiment in data["experiments"]:
            ranges = experiment["trafficAllocation"]
            ids = [t["entityId"] for t in ranges][::-1]
            for item, entity_id in zip(ranges, ids, strict=True):
                item["entityId"] = entity_id
    return json.dumps(data).encode()


def _decide_latencies(client: Client, seconds: float) -> list[float]:
    perf = time.perf_counter
    samples: list[float] = []
    stop = perf() + seconds
    n = 0
    while perf() < stop:
        user = f"user-{n % 1000}"
        t0 = perf()
        client.decide(user, "new_checkout")
        samples.append(perf() - t0)
        n += 1
    return samples


def _publisher(
    cdn_url: str, active: threading.Event, stop: threading.Event, ready: threading.Event
) -> None:
    """While ``active``: replace the datafile every 100 ms (two bucketings alternating)."""
    bodies = iter([_revision(n, flipped=n % 2 == 0) for n in range(2, int(SECONDS * 12) + 20)])
    ready.set()
    with httpx.Client(trust_env=False, timeout=10) as http:
        while not stop.wait(0.1):
            if active.is_set():  # bodies built beforehand: their JSON work is not measured
                http.put(f"{cdn_url}/datafiles/{KEY}.json", content=next(bodies))


def decisions_while_swapping() -> list[tuple[Any, ...]]:
    """Both conditions in alternating 0.5 s windows on one client (the shared box's load
    drifts; interleaving spreads it over both)."""
    samples: dict[bool, list[float]] = {False: [], True: []}
    changes = {False: 0, True: 0}
    with run_collector() as cdn, httpx.Client(trust_env=False, timeout=10) as http:
        http.put(f"{cdn.base_url}/datafiles/{KEY}.json", content=_revision(1))
        manager = PollingConfigManager(
            KEY,
            url_template=cdn.base_url + "/datafiles/{sdk_key}.json",
            update_interval=0.05,
            backoff_base=0.02,
        )
        with Client(config_manager=manager, event_dispatcher=_Null()) as client:
            client.decide("warm", "new_checkout")
            active, stop, ready = threading.Event(), threading.Event(), threading.Event()
            publisher = threading.Thread(
                target=_publisher, args=(cdn.base_url, active, stop, ready)
            )
            publisher.start()
            ready.wait(60)
            for _ in range(max(1, int(SECONDS / 0.5))):
                for swapping in (False, True):
                    if swapping:
                        active.set()
                    else:
                        active.clear()
                    time.sleep(0.15)  # the last swap of the other window is done
                    before = client.config_stats().changes
                    samples[swapping] += _decide_latencies(client, 0.5)
                    changes[swapping] += client.config_stats().changes - before
            stop.set()
            publisher.join()
    rows = []
    for swapping, label in ((False, "never swapped"), (True, "swapped every 100 ms")):
        p = percentiles(samples[swapping])
        rows.append(
            (label, f"{p['p50']:.1f}", f"{p['p99']:.1f}", len(samples[swapping]), changes[swapping])
        )
    return rows


def poll_cost() -> list[tuple[Any, ...]]:
    collector = Collector()
    with CollectorServer(collector, port=0) as server:
        collector.datafiles.put(KEY, _revision(1))
        manager = PollingConfigManager(
            KEY, url_template=server.url + "/datafiles/{sdk_key}.json", start=False
        )
        manager.poll_now()  # the first one is a 200
        cycles = 500
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(cycles):
            manager.poll_now()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        not_modified = manager.stats().not_modified
        manager.close()
    collector.close()
    # the server runs in this process: the CPU figure includes its side of each request
    return [
        (
            cycles,
            not_modified,
            f"{wall / cycles * 1e3:.2f}",
            f"{cpu / cycles * 1e3:.2f}",
        )
    ]


def change_to_decision() -> list[tuple[Any, ...]]:
    rows = []
    collector = Collector()
    with CollectorServer(collector, port=0) as server:
        template = server.url + "/datafiles/{sdk_key}.json"
        for interval, repeats in ((0.1, 20), (1.0, 6)):
            collector.datafiles.put(KEY, _revision(1))
            manager = PollingConfigManager(KEY, url_template=template, update_interval=interval)
            delays = []
            with Client(config_manager=manager, event_dispatcher=_Null()) as client:
                client.decide("warm", "new_checkout")
                for n in range(2, repeats + 2):
                    time.sleep(interval * 0.37)  # not in phase with the poller
                    t0 = time.perf_counter()
                    collector.datafiles.put(KEY, _revision(n))
                    while client.config is None or client.config.revision != str(n):
                        time.sleep(0.001)
                    delays.append(time.perf_counter() - t0)
            p = percentiles(delays)
            rows.append(
                (f"{interval:g} s", repeats, f"{p['mean'] / 1e3:.0f}", f"{p['max'] / 1e3:.0f}")
            )
    collector.close()
    return rows


def _load(url: str, clients: int, seconds: float) -> dict[str, float]:
    samples: list[float] = []
    bad = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker() -> None:
        mine: list[float] = []
        with httpx.Client(trust_env=False, timeout=10) as http:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                status = http.get(url).status_code
                mine.append(time.perf_counter() - t0)
                bad[0] += status != 200
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    p = percentiles(samples)
    return {
        "rps": len(samples) / (time.perf_counter() - started),
        "p50": p["p50"] / 1e3,
        "p99": p["p99"] / 1e3,
        "bad": bad[0],
    }


def _php(template: str, count: int) -> dict[str, Any]:
    done = subprocess.run(
        [
            "php",
            str(PHP_SCRIPT),
            f"--sdk-key={KEY}",
            f"--url-template={template}",
            f"--count={count}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def relay_and_php() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    relay_rows: list[tuple[Any, ...]] = []
    php_rows: list[tuple[Any, ...]] = []
    with (
        run_collector(latency_ms=50) as cdn,
        tempfile.TemporaryDirectory() as tmp,
        httpx.Client(trust_env=False, timeout=10) as http,
    ):
        http.put(f"{cdn.base_url}/datafiles/{KEY}.json", content=_revision(1)).raise_for_status()
        with run_relay(
            spool=f"sqlite:///{tmp}/r.db",
            upstream="http://127.0.0.1:9/v1/events",
            upstream_eu="http://127.0.0.1:9/eu/v1/events",
            sdk_key=KEY,
            datafile_upstream=cdn.base_url,
        ) as relay:
            url = f"{relay.base_url}/datafiles/{KEY}.json"
            http.get(url).raise_for_status()  # filled
            load = _load(url, 10, SECONDS)
            relay_rows.append(
                (10, f"{load['rps']:.0f}", f"{load['p50']:.2f}", f"{load['p99']:.2f}", load["bad"])
            )
            if shutil.which("php"):
                for label, template in (
                    ("relay cache", relay.base_url + "/datafiles/%s.json"),
                    ("CDN stand-in, 50 ms", cdn.base_url + "/datafiles/%s.json"),
                ):
                    result = _php(template, 40)
                    php_rows.append(
                        (
                            label,
                            result["count"],
                            f"{result['p50_ms']:.2f}",
                            f"{result['p99_ms']:.2f}",
                            f"{result['mean_ms']:.2f}",
                        )
                    )
    return relay_rows, php_rows


def main() -> None:
    guard_network()
    table(
        "1. client.decide() while the datafile changes (us)",
        ("datafile", "p50", "p99", "calls", "swaps"),
        decisions_while_swapping(),
    )
    table(
        "2. one 304 poll cycle (ms per cycle; CPU includes the in-process server)",
        ("cycles", "304s", "wall", "cpu"),
        poll_cost(),
    )
    table(
        "3. from a datafile change to decisions using it (ms)",
        ("interval", "changes", "mean", "max"),
        change_to_decision(),
    )
    relay_rows, php_rows = relay_and_php()
    table(
        "4. relay GET /datafiles/KEY.json (10 httpx clients in threads)",
        ("clients", "req/s", "p50 ms", "p99 ms", "non-200"),
        relay_rows,
    )
    table(
        "5. PHP per-request datafile fetch (fetch_datafile.php, ms)",
        ("source", "requests", "p50", "p99", "mean"),
        php_rows or [("php not installed", "-", "-", "-", "-")],
    )


if __name__ == "__main__":
    main()
