"""``python -m bench [NAME ...]``: run benchmark modules, then ``python -m bench report``.

With names (``python -m bench decisions dispatch``) only those run; without, every
benchmark module runs in turn. Each module is a plain script with a ``main()`` that prints
its tables and saves its figures with ``bench._results.save`` to ``docs/bench/<name>.json``.
``python -m bench report`` (also the last step of ``make bench``) draws the PNG plots and
rewrites the generated regions of ``docs/benchmarks.md`` from those files only, without
rerunning anything.

Size knobs: environment variables, one naming scheme ``XPEVENTS_BENCH_*`` (defaults in
brackets; each benchmark's defaults run in under two minutes on a 2-core machine). The
old ``BENCH_*`` spellings are still read for one release, with a printed note. Every
results file records the knobs it ran with, and the report lists them (``bench:knobs``).

* ``XPEVENTS_BENCH_RESULTS`` [docs/bench]: where results are written and read.
* decisions: ``XPEVENTS_BENCH_USERS`` [100000].
* datafile_size: ``XPEVENTS_BENCH_DATAFILE_SIZE_USERS`` [3000] calls per size (best of 3),
  ``XPEVENTS_BENCH_DATAFILE_SIZES`` [10x10,100x50,300x150,1000x500]
  (experiments x flags).
* dispatch (and dispatch_curves, which runs its sink, ladder and batch parts):
  ``XPEVENTS_BENCH_DISPATCH_PARTS`` [latency,e2e,faults; also sink, ladder, batch],
  ``XPEVENTS_BENCH_DISPATCH_LAT_N`` [20000], ``XPEVENTS_BENCH_DISPATCH_E2E_N`` [100000],
  ``XPEVENTS_BENCH_DISPATCH_WINDOW`` [10 s], ``XPEVENTS_BENCH_DISPATCH_STEP_S`` [1 s],
  ``XPEVENTS_BENCH_DISPATCH_FAULT_N`` [10000], ``XPEVENTS_BENCH_DISPATCH_BATCH_N``
  [30000], ``XPEVENTS_BENCH_DISPATCH_BATCH_SIZES`` [10,50,100,500,1000],
  ``XPEVENTS_BENCH_DISPATCH_SINK_S`` [2 s].
* spool: ``XPEVENTS_BENCH_SPOOL_EVENTS`` [20000], ``XPEVENTS_BENCH_BACKLOG`` [200000],
  ``XPEVENTS_BENCH_DRAIN_BACKLOGS`` [10000,100000] (add 1000000 for the issue's top
  point), ``XPEVENTS_BENCH_REDIS`` [redis://127.0.0.1:6379/9].
* datafile: ``XPEVENTS_BENCH_DATAFILE_SECONDS`` [3].
* aio: none.
* official_wirings: ``XPEVENTS_BENCH_OFFICIAL_BURST_N`` [100000],
  ``XPEVENTS_BENCH_OFFICIAL_RATE`` [5000/s], ``XPEVENTS_BENCH_OFFICIAL_PACED_S`` [4 s],
  ``XPEVENTS_BENCH_OFFICIAL_WINDOW`` [30 s].
* official_uuid: ``XPEVENTS_BENCH_OFFICIAL_UUID_N`` [100000],
  ``XPEVENTS_BENCH_OFFICIAL_UUID_RUNS`` [3].
* relay: ``XPEVENTS_BENCH_RELAY_SECONDS`` [5]; needs ``wrk`` (``make bench`` installs
  Debian's package): without it this runner refuses to run the relay benchmark rather
  than let the Python fallback client measure itself.
* collector: ``XPEVENTS_BENCH_COLLECTOR_SECONDS`` [5], ``XPEVENTS_BENCH_COLLECTOR_CLIENTS``
  [16], ``XPEVENTS_BENCH_COLLECTOR_THREADS`` [2] (of wrk),
  ``XPEVENTS_BENCH_COLLECTOR_BATCHES`` [1,100] visitors per request; needs ``wrk``.
* sync_dispatch: ``XPEVENTS_BENCH_SYNC_N`` [1000], ``XPEVENTS_BENCH_SYNC_POSTS`` [400],
  ``XPEVENTS_BENCH_SYNC_ROUNDS`` [5].
"""

from __future__ import annotations

import importlib
import pkgutil
import shutil
import sys
import time
from pathlib import Path

#: Modules of bench/ that are not benchmarks.
NOT_BENCHMARKS = {"report"}
#: Benchmarks whose figures would be the load generator's without this program.
REQUIRES = {"relay": "wrk", "collector": "wrk"}


def modules() -> list[str]:
    here = Path(__file__).parent
    return sorted(
        m.name
        for m in pkgutil.iter_modules([str(here)])
        if not m.name.startswith("_") and m.name not in NOT_BENCHMARKS
    )


def run(names: list[str]) -> int:
    if names[:1] == ["report"]:
        from bench import report

        return report.main(names[1:])
    chosen = names or modules()
    unknown = sorted(set(chosen) - set(modules()))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; have: {', '.join(modules())}")
        return 2
    refused = []
    for name in chosen:
        needed = REQUIRES.get(name)
        if needed and shutil.which(needed) is None:
            print(
                f"\n=== bench/{name}.py: refused: `{needed}` is not installed (make bench "
                f"installs it with apt-get); a figure without it would measure the "
                f"Python load generator, not the relay ===",
                flush=True,
            )
            refused.append(name)
            continue
        print(f"\n=== bench/{name}.py ===", flush=True)
        started = time.perf_counter()
        module = importlib.import_module(f"bench.{name}")
        module.main()
        print(f"=== {name}: {time.perf_counter() - started:.1f} s ===", flush=True)
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
