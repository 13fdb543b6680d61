"""Where the slowest 1% of ``activate()`` calls go, at a 200 ms endpoint.

The caller-latency part of ``python -m bench dispatch`` times 20,000 back-to-back
``activate`` calls per contender. This script repeats that measurement and tags every
call with what happened to its thread while it ran:

* ``fault``: minor page faults (``getrusage(RUSAGE_THREAD).ru_minflt``), the kernel
  handing the process a fresh zero-filled page the first time it is written;
* ``gc``: a garbage collection ran (``gc.callbacks``);
* ``off-cpu``: wall time minus the thread's CPU time above 1 µs (waiting for the GIL,
  or preempted).

Contenders, one process, in this order: xpevents on memory the process never touched
(``cold``: its queue grows from empty to the 10,000-visitor default within the measured
calls), the official SDK's default wiring, then xpevents again (``warm``: the heap
pages the first queue freed are reused). At a 200 ms endpoint nothing is delivered
during the ~60 ms the calls take, so xpevents accepts the first ``N - dropped`` calls
and refuses the rest (``queue_full``); the two phases are shown apart.

    python -m bench._tail                            # 20,000 calls, 200 ms endpoint, 3 rounds
    XPEVENTS_BENCH_TAIL_N=40000 python -m bench._tail
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python -m bench._tail   # glibc's heap on huge pages

Prints, per round and contender: p50 and p99 (µs), the ratio of the official p99 to
ours, the faults taken, the p99 of the calls that took no fault, and what the slowest 1%
of calls had in them. Not part of ``make bench`` (the caller-latency figures there are
the benchmark; this explains their tail).
"""

from __future__ import annotations

import gc
import logging
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from xpevents.testing import run_collector

from bench._common import guard_network, knob, percentiles
from bench.dispatch import EXPERIMENT, Contender

N = int(knob("tail", "TAIL_N", "20000", "activate calls per contender"))
ROUNDS = int(knob("tail", "TAIL_ROUNDS", "3", "rounds, each in a new process (a cold heap)"))
LATENCY_MS = int(knob("tail", "TAIL_LATENCY_MS", "200", "endpoint latency, ms"))
OFF_CPU_S = 1e-6


@dataclass
class Calls:
    """Per call: wall seconds, minor faults, collections, seconds off the CPU."""

    wall: list[float]
    faults: list[int]
    collections: list[int]
    off_cpu: list[float]


def measure(contender: Contender, users: Sequence[str]) -> Calls:
    """Time ``contender.activate`` once per user, tagging each call."""
    collected = [0]

    def on_gc(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            collected[0] += 1

    usage, thread = resource.getrusage, resource.RUSAGE_THREAD
    perf, cpu = time.perf_counter, time.thread_time
    activate = contender.activate
    calls = Calls([], [], [], [])
    gc.callbacks.append(on_gc)
    try:
        for user in users:
            faults0, gc0 = usage(thread).ru_minflt, collected[0]
            c0 = cpu()
            t0 = perf()
            activate(EXPERIMENT, user)
            t1 = perf()
            c1 = cpu()
            faults1, gc1 = usage(thread).ru_minflt, collected[0]
            calls.wall.append(t1 - t0)  # (list growth here is outside every reading)
            calls.off_cpu.append(max(0.0, (t1 - t0) - (c1 - c0)))
            calls.collections.append(gc1 - gc0)
            calls.faults.append(faults1 - faults0)
    finally:
        gc.callbacks.remove(on_gc)
    return calls


def describe(label: str, calls: Calls, span: range) -> dict[str, Any]:
    """p50/p99 of the calls in ``span`` and what their slowest 1% had in them."""
    idx = list(span)
    if not idx:
        return {"label": label, "calls": 0}
    wall = [calls.wall[i] for i in idx]
    p = percentiles(wall)
    clean = [calls.wall[i] for i in idx if calls.faults[i] == 0]
    slowest = sorted(idx, key=lambda i: calls.wall[i], reverse=True)[: max(1, len(idx) // 100)]
    return {
        "label": label,
        "calls": len(idx),
        "p50": p["p50"],
        "p99": p["p99"],
        "faults": sum(calls.faults[i] for i in idx),
        "faulting_calls": sum(1 for i in idx if calls.faults[i]),
        "p99_no_fault": percentiles(clean)["p99"] if clean else float("nan"),
        "slow_fault": sum(1 for i in slowest if calls.faults[i]),
        "slow_gc": sum(1 for i in slowest if calls.collections[i]),
        "slow_off_cpu": sum(1 for i in slowest if calls.off_cpu[i] > OFF_CPU_S),
        "slow_none": sum(
            1
            for i in slowest
            if not calls.faults[i] and not calls.collections[i] and calls.off_cpu[i] <= OFF_CPU_S
        ),
        "slowest": len(slowest),
    }


def one_round(round_: int, base_url: str, collector: Any) -> list[dict[str, Any]]:
    rows = []
    for name, label in (
        ("xpevents", "xpevents, cold heap"),
        ("official-default", "official default"),
        ("xpevents", "xpevents, warm heap"),
    ):
        collector.reset()
        contender = Contender(name, base_url)
        users = [f"user-{round_}-{label[:3]}-{i}" for i in range(N)]
        calls = measure(contender, users)
        dropped = contender.dropped()
        contender.finish(5.0)
        rows.append(describe(label, calls, range(N)))
        if contender.dispatcher is not None and 0 < dropped < N:
            accepted = N - dropped
            rows.append(describe("  accepted phase", calls, range(accepted)))
            rows.append(describe("  refused phase", calls, range(accepted, N)))
    return rows


def main(argv: Sequence[str] = ()) -> None:
    """Run ``ROUNDS`` rounds, each in a fresh interpreter so its first heap is cold."""
    guard_network()
    if argv[:1] == ["--round"]:
        _round_main(int(argv[1]))
        return
    print(f"activate() tail, {N:,} calls per contender, {LATENCY_MS} ms endpoint")
    for round_ in range(ROUNDS):
        print(f"\nround {round_ + 1}", flush=True)
        subprocess.run([sys.executable, "-m", "bench._tail", "--round", str(round_)], check=True)


def _round_main(round_: int) -> None:
    logging.getLogger("xpevents").setLevel(logging.CRITICAL)
    logging.getLogger("optimizely").setLevel(logging.CRITICAL)
    with run_collector(latency_ms=LATENCY_MS) as collector:
        rows = one_round(round_, collector.base_url, collector)
    official = next(r["p99"] for r in rows if r["label"] == "official default")
    print(
        f"{'contender':22s} {'calls':>6s} {'p50':>5s} {'p99':>5s} {'x':>5s} {'faults':>6s} "
        f"{'f.calls':>7s} {'p99 nf':>6s}  slowest 1%: fault/gc/off-cpu/none"
    )
    for r in rows:
        ratio = "" if r["label"].startswith(" ") else f"{official / r['p99']:.1f}"
        print(
            f"{r['label']:22s} {r['calls']:6d} {r['p50']:5.1f} {r['p99']:5.1f} "
            f"{ratio:>5s} {r['faults']:6d} {r['faulting_calls']:7d} "
            f"{r['p99_no_fault']:6.1f}  {r['slow_fault']}/{r['slow_gc']}/"
            f"{r['slow_off_cpu']}/{r['slow_none']} of {r['slowest']}"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
