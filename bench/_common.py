"""Shared benchmark helpers: loopback-only guard, timing and table printing."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATAFILE = ROOT / "tests" / "fixtures" / "datafile.json"


def guard_network() -> None:
    """Point every proxy variable at a dead loopback port so nothing can leave the box."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        os.environ[name] = dead
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost,::1"
    logging.getLogger("optimizely").setLevel(logging.CRITICAL)
    logging.disable(logging.WARNING)


def datafile_text() -> str:
    return DATAFILE.read_text()


def datafile_dict() -> dict[str, Any]:
    return dict(json.loads(datafile_text()))


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50/p99/max of samples in seconds, returned in microseconds."""
    ordered = sorted(samples)
    n = len(ordered)
    return {
        "p50": ordered[n // 2] * 1e6,
        "p99": ordered[min(n - 1, int(n * 0.99))] * 1e6,
        "max": ordered[-1] * 1e6,
        "mean": statistics.fmean(ordered) * 1e6,
    }


def timed_calls(fn: Any, args_list: Sequence[tuple[Any, ...]]) -> list[float]:
    out = []
    perf = time.perf_counter
    for args in args_list:
        t0 = perf()
        fn(*args)
        out.append(perf() - t0)
    return out


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


# -- size knobs ---------------------------------------------------------------------------

#: Every knob a benchmark module read: env name -> (benchmark, default, value, meaning).
KNOBS: dict[str, tuple[str, str, str, str]] = {}


def knob(benchmark: str, name: str, default: str, meaning: str) -> str:
    """The value of the size knob ``XPEVENTS_BENCH_<name>`` (``default`` when unset).

    The old unprefixed spelling ``BENCH_<name>`` is still read for one release, with a
    printed deprecation note. Every knob read is recorded in :data:`KNOBS`, and
    :func:`bench._results.save` stores the benchmark's knobs with its figures.
    """
    env = f"XPEVENTS_BENCH_{name}"
    value = os.environ.get(env)
    if value is None and f"BENCH_{name}" in os.environ:
        value = os.environ[f"BENCH_{name}"]
        print(f"note: BENCH_{name} is deprecated, use {env} (read for one more release)")
    KNOBS[env] = (benchmark, default, value if value is not None else default, meaning)
    return value if value is not None else default


def knobs_of(benchmark: str) -> dict[str, dict[str, str]]:
    """The knobs ``benchmark`` read: env name -> {default, value, meaning}."""
    return {
        env: {"default": default, "value": value, "meaning": meaning}
        for env, (bench, default, value, meaning) in KNOBS.items()
        if bench == benchmark
    }


#: Percentile grid stored for CDF plots (not raw samples): 1..99 plus the tail.
CDF_GRID = (*range(1, 100), 99.5, 99.9)


def cdf_points(samples: Sequence[float]) -> dict[str, float]:
    """Percentiles of ``samples`` (seconds) at :data:`CDF_GRID`, in microseconds."""
    ordered = sorted(samples)
    n = len(ordered)
    return {f"{q:g}": ordered[min(n - 1, int(n * q / 100))] * 1e6 for q in CDF_GRID}


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (what ``uptime`` prints)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return []


@contextlib.contextmanager
def listening_module(module: str, *args: str, what: str) -> Iterator[str]:
    """Run ``python -m module args...`` for the duration of the block; its base URL, read
    from the ``listening on URL`` line it prints first (``what`` names it in the error)."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"{what} did not start: {line!r}")
        yield line.split()[-1]
    finally:
        process.terminate()
        process.wait(10)
