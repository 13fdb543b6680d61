"""Decide cost vs datafile size: xpevents.Client versus optimizely-sdk 5.7.0.

Synthesised, valid datafiles (the fixture's shape: its attributes and audiences, plus N
A/B experiments of three variations and M flags, each flag with a targeted rollout rule
and an everyone-else rule; every fifth experiment and every third rule has an audience)
from 10 experiments x 10 flags to 1,000 x 500. For each size: the time to build a client
from the datafile's text, and the cost of ``activate`` (round-robin over the experiments)
and of ``decide`` (round-robin over the flags; ours ``Client.decide``, the official
``create_user_context(...).decide``), both clients with no-op dispatchers as in
``bench/decisions.py``.

``python -m bench datafile_size``; ``XPEVENTS_BENCH_DATAFILE_SIZE_USERS`` (calls per size,
best of 3 passes, default 3000), ``XPEVENTS_BENCH_DATAFILE_SIZES`` (default
``10x10,100x50,300x150,1000x500``).
Figures are saved to ``docs/bench/datafile_size.json``.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from bench._common import datafile_dict, guard_network, knob, load_average, table
from bench._results import save

USERS = int(knob("datafile_size", "DATAFILE_SIZE_USERS", "3000", "calls per size (best of 3)"))
SIZES = [
    tuple(int(x) for x in size.split("x"))
    for size in knob(
        "datafile_size", "DATAFILE_SIZES", "10x10,100x50,300x150,1000x500", "experiments x flags"
    ).split(",")
]
REPEATS = 3
ATTRIBUTES = [{"country": "US", "age": 34, "device_type": "mobile"}, {"country": "FR"}, {}]


def _experiment(i: int, audience: str) -> dict[str, Any]:
    base = 30_000_000_000 + i * 10
    variations = [{"id": str(base + k), "key": f"v{k}", "featureEnabled": True} for k in (1, 2, 3)]
    return {
        "id": str(base),
        "key": f"exp_{i}",
        "layerId": str(base + 9),
        "status": "Running",
        "variations": [{**v, "variables": []} for v in variations],
        "trafficAllocation": [
            {"entityId": variations[k]["id"], "endOfRange": (k + 1) * 3333 + (k == 2)}
            for k in range(3)
        ],
        "audienceIds": [audience] if i % 5 == 0 else [],
        "audienceConditions": ["or", audience] if i % 5 == 0 else [],
        "forcedVariations": {},
    }


def _rule(rid: int, key: str, audience: str | None) -> dict[str, Any]:
    return {
        "id": str(rid),
        "key": key,
        "layerId": str(rid + 1),
        "status": "Running",
        "audienceIds": [audience] if audience else [],
        "audienceConditions": ["or", audience] if audience else [],
        "variations": [{"id": str(rid + 2), "key": "on", "featureEnabled": True, "variables": []}],
        "trafficAllocation": [{"entityId": str(rid + 2), "endOfRange": 10000}],
        "forcedVariations": {},
    }


def synthesise(experiments: int, flags: int) -> dict[str, Any]:
    """A valid datafile with ``experiments`` A/B tests and ``flags`` flags."""
    datafile = datafile_dict()
    audience = datafile["audiences"][0]["id"]
    datafile["experiments"] = [_experiment(i, audience) for i in range(experiments)]
    datafile["groups"] = []
    datafile["featureFlags"], datafile["rollouts"] = [], []
    for j in range(flags):
        rid = 40_000_000_000 + j * 10
        targeted = _rule(rid + 3, f"flag_{j}_targeted", audience if j % 3 == 0 else None)
        everyone = _rule(rid + 6, f"default-rollout-{rid}", None)
        datafile["rollouts"].append({"id": str(rid), "experiments": [targeted, everyone]})
        datafile["featureFlags"].append(
            {"id": str(rid + 9), "key": f"flag_{j}", "rolloutId": str(rid), "experimentIds": []}
            | {"variables": []}
        )
    first = datafile["experiments"][0]["id"]
    datafile["events"] = [{"id": "20600000001", "key": "purchase", "experimentIds": [first]}]
    return datafile


class _NoOp:
    def dispatch_event(self, event: Any) -> None:
        return None


def _per_call(n: int, body: Callable[[int], object]) -> float:
    """µs per call, the best of ``REPEATS`` passes over ``n`` users (a loaded box's noise
    only ever adds time)."""
    best = float("inf")
    for _ in range(REPEATS):
        gc.collect()
        start = time.perf_counter()
        for i in range(n):
            body(i)
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def _measure(experiments: int, flags: int) -> dict[str, Any]:
    from optimizely import optimizely
    from optimizely.event.event_processor import ForwardingEventProcessor

    from xpevents.client import Client

    datafile = synthesise(experiments, flags)
    text = json.dumps(datafile)
    t0 = time.perf_counter()
    official = optimizely.Optimizely(text, event_processor=ForwardingEventProcessor(_NoOp()))
    t1 = time.perf_counter()
    ours = Client(text, _NoOp())
    t2 = time.perf_counter()
    exp_keys = [e["key"] for e in datafile["experiments"]]
    flag_keys = [f["key"] for f in datafile["featureFlags"]]
    ids = [f"user-{i}" for i in range(USERS)]

    def attrs(i: int) -> dict[str, Any]:
        return ATTRIBUTES[i % len(ATTRIBUTES)]

    row: dict[str, Any] = {"experiments": experiments, "flags": flags, "bytes": len(text)}
    row["init_ms"] = {"official": (t1 - t0) * 1e3, "xpevents": (t2 - t1) * 1e3}
    row["activate_us"] = {
        "official": _per_call(
            USERS, lambda i: official.activate(exp_keys[i % experiments], ids[i], attrs(i))
        ),
        "xpevents": _per_call(
            USERS, lambda i: ours.activate(exp_keys[i % experiments], ids[i], attrs(i))
        ),
    }
    row["decide_us"] = {
        "official": _per_call(
            USERS,
            lambda i: official.create_user_context(ids[i], attrs(i)).decide(flag_keys[i % flags]),
        ),
        "xpevents": _per_call(USERS, lambda i: ours.decide(ids[i], flag_keys[i % flags], attrs(i))),
    }
    official.close()
    ours.close()
    return row


def main() -> None:
    guard_network()
    logging.disable(logging.CRITICAL)
    started = load_average()
    rows = [_measure(e, f) for e, f in SIZES]
    table(
        f"cost vs datafile size ({USERS:,} calls per size; official / xpevents)",
        ("experiments x flags", "KB", "init ms", "activate µs", "decide µs", "decide ratio"),
        [
            (
                f"{r['experiments']} x {r['flags']}",
                f"{r['bytes'] / 1024:,.0f}",
                f"{r['init_ms']['official']:.1f} / {r['init_ms']['xpevents']:.1f}",
                f"{r['activate_us']['official']:.2f} / {r['activate_us']['xpevents']:.2f}",
                f"{r['decide_us']['official']:.2f} / {r['decide_us']['xpevents']:.2f}",
                f"{r['decide_us']['official'] / r['decide_us']['xpevents']:.1f}x",
            )
            for r in rows
        ],
    )
    save(
        "datafile_size",
        {
            "calls_per_size": USERS,
            "rows": rows,
            "load_average_at_start": started,
            "load_average_at_end": load_average(),
        },
    )
    logging.disable(logging.NOTSET)


if __name__ == "__main__":
    main()
