from __future__ import annotations

import io
import subprocess
import sys

import pytest
from rich.console import Console

from xpevents import __version__
from xpevents.demo import run


@pytest.mark.parametrize("kind", ["default", "batch"])
def test_demo_delivers_everything_it_dispatched(kind: str) -> None:
    out = io.StringIO()
    summary = run(users=150, dispatcher_kind=kind, console=Console(file=out, width=120))
    assert summary["visitors_dispatched"] > 150
    assert summary["collector"]["unique_events"] == summary["visitors_dispatched"]
    assert summary["dispatcher"]["delivered"] == summary["visitors_dispatched"]
    assert "sent vs received" in out.getvalue()
    n = summary["visitors_dispatched"]
    assert f"OK {n:,}/{n:,} delivered in " in out.getvalue() and "0 lost, 0 duplicates" in (
        out.getvalue()
    )
    assert "impressions per experiment and variation (by key)" in out.getvalue()


def test_python_dash_m_is_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "xpevents", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert __version__ in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "xpevents", "--help"], capture_output=True, text=True, timeout=60
    )
    assert "collector" in result.stdout and "demo" in result.stdout


def test_demo_rejects_bad_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "xpevents", "demo", "--users", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--users" in result.stderr


def test_the_demo_datafile_change_moves_traffic_to_the_new_variation() -> None:
    out = io.StringIO()
    summary = run(users=60, console=Console(file=out, width=140))
    change = summary["datafile_change"]
    old, new = change["revisions"]
    assert int(new) == int(old) + 1
    assert len(change["before"]) >= 2  # split between variations before
    assert change["after"] == {change["target"]: 60}  # all on the new one after
    assert change["seconds_to_swap"] < 10
    assert change["delivered"] == 120
    assert "datafile change mid-run" in out.getvalue()
