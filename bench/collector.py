"""xpevents collector: requests and visitors per second it stores, on loopback.

``wrk`` (2 threads, 16 keep-alive connections by default) POSTs event API payloads
shaped like the Python SDK's impressions, every request with uuids of its own (the
collector de-duplicates events, so a repeated body would measure the duplicate path),
for 1 and 100 visitors per request, to a collector keeping events in memory and one
writing them to a ``--db`` SQLite file. Afterwards the collector's ``unique_events``
must equal the visitors of the requests wrk saw answered (plus at most the requests
still in flight when wrk stopped): a figure with lost events is not printed as a
success. ``python -m bench collector``; needs ``wrk`` like the relay benchmark.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from xpevents.testing import run_collector

from bench._common import guard_network, knob, load_average, table
from bench._results import save
from bench._wrk import PLACEHOLDER, distinct_bodies_script, run_wrk

SECONDS = float(knob("collector", "COLLECTOR_SECONDS", "5", "s of wrk per row"))
CLIENTS = int(knob("collector", "COLLECTOR_CLIENTS", "16", "keep-alive connections"))
THREADS = int(knob("collector", "COLLECTOR_THREADS", "2", "wrk threads"))
BATCHES = tuple(
    int(n)
    for n in knob("collector", "COLLECTOR_BATCHES", "1,100", "visitors per request").split(",")
)


def body_template(visitors: int) -> str:
    """A Python SDK-shaped payload of ``visitors`` impressions; uuids carry the
    request's id (:data:`~bench._wrk.PLACEHOLDER`) and the visitor's index."""

    def visitor(index: int) -> dict[str, Any]:
        return {
            "visitor_id": f"user-{index}",
            "attributes": [
                {
                    "entity_id": "$opt_bot_filtering",
                    "key": "$opt_bot_filtering",
                    "type": "custom",
                    "value": True,
                },
                {"entity_id": "111", "key": "plan", "type": "custom", "value": "pro"},
                {"entity_id": "112", "key": "country", "type": "custom", "value": "FR"},
            ],
            "snapshots": [
                {
                    "decisions": [
                        {
                            "campaign_id": "21000015638",
                            "experiment_id": "21000014521",
                            "variation_id": "21000016755",
                            "metadata": {
                                "flag_key": "",
                                "rule_key": "checkout_button_color",
                                "rule_type": "experiment",
                                "variation_key": "control",
                                "enabled": True,
                            },
                        }
                    ],
                    "events": [
                        {
                            "entity_id": "21000015638",
                            "uuid": f"{PLACEHOLDER}-{index:04d}",
                            "timestamp": 1700000000000,
                            "key": "campaign_activated",
                        }
                    ],
                }
            ],
        }

    payload = {
        "account_id": "10367498574",
        "project_id": "20224828075",
        "revision": "241",
        "client_name": "python-sdk",
        "client_version": "5.7.0",
        "anonymize_ip": True,
        "enrich_decisions": True,
        "visitors": [visitor(i) for i in range(visitors)],
    }
    return json.dumps(payload, separators=(",", ":"))


def _row(storage: str, visitors: int, db: Path | None) -> dict[str, Any]:
    options: dict[str, Any] = {} if db is None else {"db": str(db)}
    template = body_template(visitors)
    with run_collector(**options) as collector:
        result = run_wrk(
            collector.events_url, CLIENTS, SECONDS, distinct_bodies_script(template), THREADS
        )
        answered = int(result["requests"]) - int(result["non_2xx"])
        deadline = time.monotonic() + 10
        while True:  # what wrk saw answered is stored; in-flight requests may add a few
            stored = int(collector.stats()["unique_events"])
            if stored >= answered * visitors or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    complete = answered * visitors <= stored <= (answered + CLIENTS) * visitors
    return {
        "storage": storage,
        "visitors_per_request": visitors,
        "body_bytes": len(template),
        "clients": CLIENTS,
        "generator": f"wrk -t{THREADS} -c{CLIENTS}",
        "rps": result["rps"],
        "visitors_per_s": result["rps"] * visitors,
        "p50_ms": result["p50"],
        "p99_ms": result["p99"],
        "non_2xx": int(result["non_2xx"]),
        "stored_events": stored,
        "answered_requests": answered,
        "all_stored": complete,
        "generator_cpu_share": round(result["generator_cpu_share"], 3),
        "load_1m": load_average()[0],
    }


def main() -> None:
    guard_network()
    if shutil.which("wrk") is None:
        print("wrk is not installed: no collector figure (install it: apt-get install wrk)")
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for storage in ("memory", "sqlite --db"):
            for visitors in BATCHES:
                db = None if storage == "memory" else Path(tmp) / f"collector-{visitors}.db"
                rows.append(_row(storage, visitors, db))
                print("  done:", storage, visitors, flush=True)
    table(
        f"collector ingest, {SECONDS:g} s per row, wrk with a distinct body per request",
        (
            "storage",
            "visitors/request",
            "requests/s",
            "visitors/s",
            "p50 ms",
            "p99 ms",
            "all stored",
            "wrk CPU",
        ),
        [
            (
                r["storage"],
                r["visitors_per_request"],
                f"{r['rps']:,.0f}",
                f"{r['visitors_per_s']:,.0f}",
                f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                r["all_stored"],
                f"{r['generator_cpu_share']:.0%}",
            )
            for r in rows
        ],
    )
    failed = [r for r in rows if not r["all_stored"]]
    save("collector", {"ingest": rows})
    if failed:
        raise SystemExit(f"the collector lost events in {len(failed)} row(s): {failed}")


if __name__ == "__main__":
    main()
