"""bench/report.py: plots and generated Markdown regions from a synthetic results dir."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")  # the bench extra (and dev) installs it

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.relay import ingest_records  # noqa: E402  (after the path insert)

NARRATIVE_HEAD = "# Benchmarks\n\nHand-written text, kept   as is.\n\n"
NARRATIVE_MID = "\nMore narrative between regions | with odd chars <!-- a comment -->\n\n"


def _document(name: str, results: dict[str, Any]) -> dict[str, Any]:
    return {
        "benchmark": name,
        "date": "2026-12-02 12:00 UTC",
        "command": f"python -m bench {name}",
        "environment": {"python": "3.11.7", "cpus": 2, "load_average_at_save": [1.5, 1.2, 1.0]},
        "knobs": {"XPEVENTS_BENCH_X": {"default": "1", "value": "2", "meaning": "a size"}},
        "results": results,
    }


def _relay_row(workers: int, clients: int) -> tuple[Any, ...]:
    """A row as bench/relay.py prints it (formatted strings), to be saved as numbers."""
    forwarder = "process" if workers > 1 else "thread"
    rps = f"{100 * clients * workers:.0f}"
    return ("sqlite", workers, forwarder, clients, "wrk", rps, "0.50", "2.00", 0, "0.07", "1.00")


def _write_results(directory: Path) -> None:
    cdf = {f"{q}": float(q) for q in range(1, 100)}
    steps = [
        {"offered_per_s": r, "delivered_per_s": r, "delivered_fraction": 1.0, "caller_p99_us": 9}
        for r in (1000, 2000)
    ]
    documents = {
        "dispatch": {
            "caller_latency": [
                {"endpoint_ms": 0, "contender": c, "p50_us": 1.0, "p99_us": 2.0, "cdf_us": cdf}
                for c in ("xpevents", "official-default")
            ],
            "fault_mix": {"rows": [{"contender": "xpevents", "delivered": 10}]},
        },
        "dispatch_curves": {
            "sink_ceiling": {"visitors_per_s": 5000.0, "connections": 2},
            "rate_ladder": {
                "step_s": 1,
                "curves": [{"endpoint_ms": 0, "contender": "xpevents", "steps": steps}],
            },
            "batch_cpu": {
                "rows": [{"batch_size": b, "cpu_s_per_10k_delivered": 0.1} for b in (10, 100)]
            },
        },
        "spool": {
            "drain_rate": [
                {"spool": s, "backlog": b, "events_per_s": 1000.0}
                for s in ("sqlite", "redis")
                for b in (10, 100)
            ]
        },
        "relay": {"ingest": ingest_records([_relay_row(w, c) for w in (1, 2) for c in (1, 10)])},
        "datafile_size": {
            "calls_per_size": 10,
            "rows": [
                {
                    "experiments": e,
                    "flags": e,
                    "bytes": 1,
                    "init_ms": {"official": 2.0, "xpevents": 1.0},
                    "activate_us": {"official": 2.0, "xpevents": 1.0},
                    "decide_us": {"official": 2.0, "xpevents": 1.0},
                }
                for e in (10, 100)
            ],
        },
        "aio": {"anything": [{"a": 1, "b": "x"}], "scalar": 3.5},
    }
    for name, results in documents.items():
        (directory / f"{name}.json").write_text(json.dumps(_document(name, results)))
    (directory / "broken.json").write_text("{not json")


def test_report_draws_the_plots_and_rewrites_only_the_marked_regions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import report

    results = tmp_path / "results"
    results.mkdir()
    _write_results(results)
    monkeypatch.setenv("XPEVENTS_BENCH_RESULTS", str(results))
    markdown = tmp_path / "benchmarks.md"
    original = (
        NARRATIVE_HEAD
        + "<!-- bench:dispatch:begin -->\nstale\n<!-- bench:dispatch:end -->\n"
        + NARRATIVE_MID
        + "<!-- bench:spool:begin -->\n<!-- bench:spool:end -->\n\n"
        + f"{report.SECTION}\n\n<!-- bench:relay:begin -->\n<!-- bench:relay:end -->\n"
    )
    markdown.write_text(original)

    drawn = report.build(markdown)

    expected = {
        "latency_cdf.png",
        "dispatch_rate.png",
        "cpu_vs_batch.png",
        "spool_drain.png",
        "relay_clients.png",
        "datafile_size.png",
    }
    assert drawn == expected
    for name in expected:
        assert (results / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = markdown.read_text()
    assert text.startswith(NARRATIVE_HEAD + "<!-- bench:dispatch:begin -->\n")
    assert NARRATIVE_MID in text
    assert "stale" not in text
    assert "python -m bench dispatch" in text and "1.5 / 1.2 / 1" in text
    assert "![latency_cdf](results/latency_cdf.png)" in text
    assert "![spool_drain](results/spool_drain.png)" in text
    # relay rows: spool, workers, forwarder, clients, rps (saved as numbers, not strings)
    assert "| sqlite | 1 | thread | 10 | 1,000 |" in text
    assert "| sqlite | 2 | process | 10 | 2,000 |" in text
    # the section exists: nothing appended, absent regions (datafile_size...) not written
    assert text.count(report.SECTION) == 1
    assert "bench:datafile_size" not in text
    # the text outside the markers is byte for byte the original
    assert report.REGION.sub("", text) == report.REGION.sub("", original)
    # rerunning changes nothing
    report.build(markdown)
    assert markdown.read_text() == text


def test_report_appends_the_generated_section_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import report

    results = tmp_path / "empty"
    results.mkdir()
    monkeypatch.setenv("XPEVENTS_BENCH_RESULTS", str(results))
    markdown = tmp_path / "benchmarks.md"
    markdown.write_text(NARRATIVE_HEAD)
    assert report.build(markdown) == set()
    text = markdown.read_text()
    assert text.startswith(NARRATIVE_HEAD)
    for name in report.ORDER:
        assert f"<!-- bench:{name}:begin -->" in text
    assert "_Not run yet: `python -m bench spool`._" in text
    report.build(markdown)
    assert markdown.read_text() == text
