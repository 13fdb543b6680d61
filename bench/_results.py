"""Where benchmarks put their figures: one JSON file per benchmark under ``docs/bench/``.

Each benchmark calls :func:`save` with what it measured; the report (plots and the
generated tables of ``docs/benchmarks.md``) is drawn from these files only, so a reader
can rerun one benchmark and redraw without rerunning the others.

A results file holds ``{"benchmark", "date", "command", "environment", "results"}``;
``results`` is the benchmark's own JSON-serialisable dict.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from bench._common import ROOT

RESULTS_DIR = Path(os.environ.get("XPEVENTS_BENCH_RESULTS", ROOT / "docs" / "bench"))


def environment() -> dict[str, Any]:
    """The machine and versions a figure was measured with."""
    try:
        from importlib.metadata import version

        official = version("optimizely-sdk")
    except Exception:  # pragma: no cover - the bench extra installs it
        official = None
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        load = None
    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "optimizely_sdk": official,
        "load_average_1m_at_save": load,
    }


def save(name: str, results: dict[str, Any], *, command: str | None = None) -> Path:
    """Write ``docs/bench/<name>.json`` (the whole file is replaced) and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    document = {
        "benchmark": name,
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command or f"python -m bench {name}",
        "environment": environment(),
        "results": results,
    }
    path.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
    print(f"results: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def load(name: str) -> dict[str, Any] | None:
    """The saved document of benchmark ``name``, or ``None`` when it has not run."""
    path = RESULTS_DIR / f"{name}.json"
    if not path.exists():
        return None
    return dict(json.loads(path.read_text()))
