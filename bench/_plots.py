"""The report's PNG plots, drawn with matplotlib (Agg) from saved results documents only.

Each ``plot_*`` function takes the loaded documents (``bench._results.load_all()``) and
an output directory, draws one PNG when its data is present, and returns the file name
(``None`` when there is nothing to draw). Keys are read defensively: a results file from
an older or newer benchmark draws what it has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

Documents = dict[str, dict[str, Any]]

OURS, THEIRS = "#1f77b4", "#d62728"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _results(documents: Documents, name: str) -> dict[str, Any]:
    document = documents.get(name) or {}
    results = document.get("results")
    return results if isinstance(results, dict) else {}


def _dispatch(documents: Documents) -> dict[str, Any]:
    """The dispatch figures: ``dispatch_curves`` over ``dispatch`` (either may be absent)."""
    return {**_results(documents, "dispatch"), **_results(documents, "dispatch_curves")}


def _curves_stamp(documents: Documents) -> str:
    return _stamp(documents, "dispatch_curves" if "dispatch_curves" in documents else "dispatch")


def _colour(contender: str) -> str:
    return OURS if contender.startswith("xpevents") else THEIRS


def _finish(fig: Any, out: Path, name: str, subtitle: str) -> str:
    fig.suptitle(subtitle, fontsize=9)
    fig.tight_layout()
    fig.savefig(out / name, dpi=90)
    _pyplot().close(fig)
    return name


def _stamp(documents: Documents, name: str) -> str:
    document = documents.get(name) or {}
    env = document.get("environment") or {}
    load = env.get("load_average_at_save") or [env.get("load_average_1m_at_save")]
    shown = "/".join(f"{x:.2f}" for x in load if isinstance(x, int | float))
    return f"{document.get('command', name)} - {document.get('date', '?')} - load {shown}"


def plot_latency_cdf(documents: Documents, out: Path) -> str | None:
    rows = [r for r in _results(documents, "dispatch").get("caller_latency", []) if "cdf_us" in r]
    if not rows:
        return None
    plt = _pyplot()
    endpoints = sorted({r.get("endpoint_ms", 0) for r in rows})
    fig, axes = plt.subplots(1, len(endpoints), figsize=(5 * len(endpoints), 3.6), squeeze=False)
    for ax, endpoint in zip(axes[0], endpoints, strict=True):
        for r in (r for r in rows if r.get("endpoint_ms", 0) == endpoint):
            points = sorted((float(q), float(v)) for q, v in r["cdf_us"].items())
            ax.plot([v for _, v in points], [q for q, _ in points], label=r.get("contender"))
        ax.set_xscale("log")
        ax.set_xlabel("activate() caller latency (µs, log)")
        ax.set_ylabel("percentile")
        ax.set_title(f"endpoint {endpoint} ms")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return _finish(fig, out, "latency_cdf.png", _stamp(documents, "dispatch"))


def plot_rate_ladder(documents: Documents, out: Path) -> str | None:
    results = _dispatch(documents)
    curves = [c for c in (results.get("rate_ladder") or {}).get("curves", []) if c.get("steps")]
    if not curves:
        return None
    plt = _pyplot()
    endpoints = sorted({c.get("endpoint_ms", 0) for c in curves})
    fig, axes = plt.subplots(3, len(endpoints), figsize=(5 * len(endpoints), 9), squeeze=False)
    ceiling = (results.get("sink_ceiling") or {}).get("visitors_per_s")
    for col, endpoint in enumerate(endpoints):
        top, mid, low = axes[0][col], axes[1][col], axes[2][col]
        for c in (c for c in curves if c.get("endpoint_ms", 0) == endpoint):
            steps = c["steps"]
            x = [s.get("offered_per_s", 0) for s in steps]
            style = {"label": c.get("contender"), "marker": "o", "color": _colour(c["contender"])}
            top.plot(x, [s.get("delivered_per_s", 0) for s in steps], **style)
            mid.plot(x, [s.get("delivered_fraction", 0) for s in steps], **style)
            low.plot(x, [s.get("caller_p99_us", 0) for s in steps], **style)
        lo, hi = top.get_xlim()
        top.plot([lo, hi], [lo, hi], ":", color="grey", label="offered = delivered")
        if ceiling and endpoint == 0:
            top.axhline(ceiling, linestyle="--", color="black", label="sink ceiling")
        top.set_title(f"endpoint {endpoint} ms")
        top.set_ylabel("delivered events/s")
        mid.set_ylabel("delivered fraction")
        low.set_ylabel("caller p99 (µs)")
        for ax in (top, mid, low):
            ax.set_xscale("log")
            ax.set_xlabel("offered events/s (paced, log)")
            ax.grid(True, alpha=0.3)
        top.set_yscale("log")
        low.set_yscale("log")
        top.legend(fontsize=7)
    return _finish(fig, out, "dispatch_rate.png", _curves_stamp(documents))


def plot_batch_cpu(documents: Documents, out: Path) -> str | None:
    batch = _dispatch(documents).get("batch_cpu") or {}
    rows = [r for r in batch.get("rows", []) if "cpu_s_per_10k_delivered" in r]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    sizes = [r["batch_size"] for r in rows]
    ax.plot(sizes, [r["cpu_s_per_10k_delivered"] for r in rows], marker="o", color=OURS)
    ax.set_xscale("log")
    ax.set_xlabel("batch_size (log)")
    ax.set_ylabel("SDK CPU s per 10k delivered")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    events, overflow = batch.get("events", "?"), batch.get("overflow")
    ax.set_title(f"xpevents, {events} activates, overflow={overflow}")
    return _finish(fig, out, "cpu_vs_batch.png", _curves_stamp(documents))


def plot_spool_drain(documents: Documents, out: Path) -> str | None:
    rows = [r for r in _results(documents, "spool").get("drain_rate", []) if "events_per_s" in r]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for spool in sorted({r.get("spool", "?") for r in rows}):
        mine = sorted((r["backlog"], r["events_per_s"]) for r in rows if r.get("spool") == spool)
        ax.plot([b for b, _ in mine], [v for _, v in mine], marker="o", label=spool)
    ax.set_xscale("log")
    ax.set_xlabel("backlog in the spool (events, log)")
    ax.set_ylabel("drain events/s")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _finish(fig, out, "spool_drain.png", _stamp(documents, "spool"))


def _first(row: dict[str, Any], names: Iterable[str]) -> Any:
    for name in names:
        if isinstance(row.get(name), int | float):
            return row[name]
    return None


RPS_KEYS = ("rps", "requests_per_s", "req_per_s", "requests_s")
P99_KEYS = ("p99_ms", "p99")
GROUP_KEYS = ("spool", "name", "variant", "config")


def relay_rows(results: Any) -> list[dict[str, Any]]:
    """Every dict, anywhere in ``results``, with a client count and a request rate."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("clients"), int | float) and _first(node, RPS_KEYS):
                found.append(node)
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(results)
    return found


def _group(row: dict[str, Any]) -> str:
    for key in GROUP_KEYS:
        if row.get(key) is not None:
            workers = row.get("workers")
            if isinstance(workers, int) and workers > 1:
                return f"{row[key]}, {workers} workers"
            return str(row[key])
    return "relay"


def plot_relay(documents: Documents, out: Path) -> str | None:
    rows = relay_rows(_results(documents, "relay"))
    if not rows:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for group in sorted({_group(r) for r in rows}):
        mine = sorted((r for r in rows if _group(r) == group), key=lambda r: r["clients"])
        clients = [r["clients"] for r in mine]
        left.plot(clients, [_first(r, RPS_KEYS) for r in mine], marker="o", label=group)
        p99 = [_first(r, P99_KEYS) for r in mine]
        if any(v is not None for v in p99):
            right.plot(clients, p99, marker="o", label=group)
    left.set_yscale("log")  # the floor rows are several times the relay's rate
    for ax, label in ((left, "requests/s (log)"), (right, "p99 (ms)")):
        ax.set_xscale("log")
        ax.set_xlabel("concurrent clients (log)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    return _finish(fig, out, "relay_clients.png", _stamp(documents, "relay"))


def plot_datafile_size(documents: Documents, out: Path) -> str | None:
    rows = [r for r in _results(documents, "datafile_size").get("rows", []) if "decide_us" in r]
    if not rows:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    labels = [f"{r.get('experiments')}x{r.get('flags')}" for r in rows]
    x = list(range(len(rows)))
    for ax, key, title in zip(
        axes,
        ("decide_us", "activate_us", "init_ms"),
        ("decide (µs per call)", "activate (µs per call)", "client from datafile (ms)"),
        strict=True,
    ):
        for side, colour in (("official", THEIRS), ("xpevents", OURS)):
            ax.plot(x, [(r.get(key) or {}).get(side) for r in rows], marker="o", label=side)
            ax.lines[-1].set_color(colour)
        ax.set_xticks(x, labels)
        ax.set_xlabel("experiments x flags")
        ax.set_title(title)
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return _finish(fig, out, "datafile_size.png", _stamp(documents, "datafile_size"))


PLOTS: tuple[Callable[[Documents, Path], str | None], ...] = (
    plot_latency_cdf,
    plot_rate_ladder,
    plot_batch_cpu,
    plot_spool_drain,
    plot_relay,
    plot_datafile_size,
)
