"""Where benchmarks put their figures: one JSON file per benchmark under ``docs/bench/``.

Each benchmark calls :func:`save` with what it measured; the report (plots and the
generated tables of ``docs/benchmarks.md``) is drawn from these files only, so a reader
can rerun one benchmark and redraw without rerunning the others.

A results file holds ``{"benchmark", "date", "command", "environment", "knobs",
"results"}``; ``results`` is the benchmark's own JSON-serialisable dict, ``knobs`` the
``XPEVENTS_BENCH_*`` sizes it ran with, ``environment`` the machine, versions and load
average. ``XPEVENTS_BENCH_RESULTS`` points the directory elsewhere (the tests use it).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from bench._common import ROOT, knobs_of, load_average

RESULTS_DIR = Path(os.environ.get("XPEVENTS_BENCH_RESULTS", ROOT / "docs" / "bench"))


def results_dir() -> Path:
    """Where results are read and written: ``XPEVENTS_BENCH_RESULTS`` at call time."""
    return Path(os.environ.get("XPEVENTS_BENCH_RESULTS", RESULTS_DIR))


def environment() -> dict[str, Any]:
    """The machine and versions a figure was measured with."""
    try:
        from importlib.metadata import version

        official = version("optimizely-sdk")
    except Exception:  # pragma: no cover - the bench extra installs it
        official = None
    load = load_average()
    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "optimizely_sdk": official,
        "load_average_1m_at_save": load[0] if load else None,
        "load_average_at_save": load,
    }


def save(
    name: str,
    results: dict[str, Any],
    *,
    command: str | None = None,
    knobs_from: tuple[str, ...] = (),
) -> Path:
    """Write ``docs/bench/<name>.json`` (the whole file is replaced) and return its path.

    The file records the knobs registered under ``name`` (and under ``knobs_from``, for a
    benchmark that runs another module's parts).
    """
    knobs: dict[str, Any] = {}
    for owner in (name, *knobs_from):
        knobs |= knobs_of(owner)
    directory = results_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    document = {
        "benchmark": name,
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command or f"python -m bench {name}",
        "environment": environment(),
        "knobs": knobs,
        "results": results,
    }
    path.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
    print(f"results: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def load(name: str) -> dict[str, Any] | None:
    """The saved document of benchmark ``name``, or ``None`` when it has not run."""
    path = results_dir() / f"{name}.json"
    if not path.exists():
        return None
    try:
        return dict(json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None  # a truncated or hand-broken file: the report skips it


def load_all() -> dict[str, dict[str, Any]]:
    """Every saved document in the results directory, by benchmark name."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(results_dir().glob("*.json")):
        document = load(path.stem)
        if document is not None:
            out[path.stem] = document
    return out
