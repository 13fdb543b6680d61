"""``python -m bench report``: plots and the generated tables, from saved results only.

Reads every ``docs/bench/*.json`` (``XPEVENTS_BENCH_RESULTS`` points elsewhere), draws
the PNG plots next to them (matplotlib, the ``bench`` extra; without it the tables are
still written and the plots skipped with a note) and rewrites the generated regions of
``docs/benchmarks.md``: the text between ``<!-- bench:NAME:begin -->`` and
``<!-- bench:NAME:end -->``. Everything outside those markers is hand-written narrative
and is left byte for byte as it is. When the file has no ``## Generated results``
section yet, one with every region is appended at its end; a region whose markers were
removed by hand is not written anywhere. Nothing is rerun.

    python -m bench report [--markdown PATH]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import _plots
from bench._common import ROOT
from bench._results import load_all, results_dir

Documents = dict[str, dict[str, Any]]
MARKDOWN = ROOT / "docs" / "benchmarks.md"
SECTION = "## Generated results"
REGION = re.compile(
    r"(<!-- bench:(?P<name>[a-z0-9_]+):begin -->\n)(?P<body>.*?)(<!-- bench:(?P=name):end -->)",
    re.DOTALL,
)


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | dict):
        text = ", ".join(_fmt(v) for v in (value.values() if isinstance(value, dict) else value))
        return text if len(text) < 60 else text[:57] + "..."
    return str(value).replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _dict_rows(rows: list[Any]) -> str:
    """A table of a list of flat dicts: the union of their scalar keys, in first-seen order."""
    keys: list[str] = []
    for row in rows:
        for key, value in row.items():
            if key not in keys and not isinstance(value, dict | list):
                keys.append(key)
    return md_table(keys, [[row.get(k) for k in keys] for row in rows])


def generic(results: Any, depth: int = 0) -> str:
    """Tables of whatever a benchmark saved: lists of dicts, and scalars."""
    if not isinstance(results, dict):
        return f"`{_fmt(results)}`\n"
    parts, scalars = [], []
    for key, value in results.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            parts.append(f"**{key}**\n\n{_dict_rows(value)}")
        elif isinstance(value, dict) and depth < 2:
            inner = generic(value, depth + 1)
            if inner.strip():
                parts.append(f"**{key}**\n\n{inner}")
        elif not isinstance(value, list | dict):
            scalars.append([key, value])
    head = md_table(["figure", "value"], scalars) if scalars else ""
    return "\n".join(p for p in [head, *parts] if p)


def provenance(document: dict[str, Any]) -> str:
    env = document.get("environment") or {}
    load = env.get("load_average_at_save") or [env.get("load_average_1m_at_save")]
    shown = " / ".join(_fmt(x) for x in load if x is not None) or "?"
    return (
        f"Run {document.get('date', '?')}: `{document.get('command', '?')}`; "
        f"CPython {env.get('python', '?')}, {env.get('cpus', '?')} CPUs "
        f"({env.get('machine', '?')}), optimizely-sdk {env.get('optimizely_sdk', '?')}; "
        f"load average (1/5/15 min) at save {shown}.\n"
    )


def _images(names: list[str], image_dir: str) -> str:
    return "".join(f"![{Path(n).stem}]({image_dir}/{n})\n" for n in names)


def _dispatch(results: dict[str, Any]) -> str:
    out = []
    lat = results.get("caller_latency") or []
    if lat:
        keys = ["endpoint_ms", "contender", "calls", "p50_us", "p99_us", "max_us"]
        out.append("Caller `activate()` latency (µs):\n\n" + md_table(keys, _pick(lat, keys)))
    sink = results.get("sink_ceiling")
    ladder = results.get("rate_ladder") or {}
    if ladder.get("curves"):
        rows = [
            [c.get(k) for k in ("endpoint_ms", "contender", "highest_lossless_per_s")]
            for c in ladder["curves"]
        ]
        header = ["endpoint_ms", "contender", "highest lossless events/s"]
        note = f" ({ladder.get('step_s')} s per step)"
        if isinstance(sink, dict):
            note += (
                f"; loopback sink ceiling in the same run: "
                f"{_fmt(sink.get('visitors_per_s'))} visitors/s "
                f"({sink.get('connections')} keep-alive connections, "
                f"{sink.get('visitors_per_request')} visitors per request, generator CPU "
                f"{_fmt(sink.get('generator_cpu_share'))} of one core)"
            )
        out.append(f"Highest paced rate with nothing lost{note}:\n\n" + md_table(header, rows))
    rest = {k: v for k, v in results.items() if k not in ("caller_latency", "rate_ladder")}
    rest.pop("sink_ceiling", None)
    out.append(generic(rest))
    return "\n".join(out)


def _pick(rows: list[dict[str, Any]], keys: list[str]) -> list[list[Any]]:
    return [[r.get(k) for k in keys] for r in rows]


def _datafile_size(results: dict[str, Any]) -> str:
    rows = []
    for r in results.get("rows", []):
        row: list[Any] = [f"{r.get('experiments')} x {r.get('flags')}", r.get("bytes")]
        for key in ("init_ms", "activate_us", "decide_us"):
            sides = r.get(key) or {}
            row += [sides.get("official"), sides.get("xpevents")]
        rows.append(row)
    header = ["experiments x flags", "bytes", "init ms official", "init ms ours"]
    header += ["activate µs official", "activate µs ours", "decide µs official", "decide µs ours"]
    calls = f"{_fmt(results.get('calls_per_size'))} calls per size, best of 3 passes"
    return f"Cost vs datafile size ({calls}):\n\n" + md_table(header, rows)


def _relay(results: dict[str, Any]) -> str:
    rows = _plots.relay_rows(results)
    if not rows:
        return generic(results)
    keys = ["spool", "workers", "forwarder", "clients", *_plots.RPS_KEYS, "p50_ms"]
    keys += [*_plots.P99_KEYS, "non_2xx", "generator", "generator_cpu_share", "load_1m"]
    keys = [k for k in keys if any(k in r for r in rows)]
    return "Relay ingest vs concurrent clients:\n\n" + md_table(keys, _pick(rows, keys))


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "dispatch": _dispatch,
    "dispatch_curves": _dispatch,
    "datafile_size": _datafile_size,
    "relay": _relay,
}
PLOTS_OF = {
    "dispatch": ["latency_cdf.png"],
    "dispatch_curves": ["dispatch_rate.png", "cpu_vs_batch.png"],
    "spool": ["spool_drain.png"],
    "relay": ["relay_clients.png"],
    "datafile_size": ["datafile_size.png"],
}
ORDER = (
    "summary",
    "knobs",
    "decisions",
    "datafile_size",
    "dispatch",
    "dispatch_curves",
    "sync_dispatch",
    "spool",
    "relay",
    "collector",
    "datafile",
    "aio",
    "official_wirings",
    "official_uuid",
)


def _summary(documents: Documents) -> str:
    rows = []
    for name, doc in sorted(documents.items()):
        env = doc.get("environment") or {}
        load = env.get("load_average_at_save") or [env.get("load_average_1m_at_save")]
        rows.append([name, doc.get("date"), f"`{doc.get('command')}`", load, env.get("python")])
    if not rows:
        return "_No results yet: run `make bench`._\n"
    return md_table(["benchmark", "date", "command", "load average", "python"], rows)


def _knobs(documents: Documents) -> str:
    rows = []
    for name, doc in sorted(documents.items()):
        for env, k in (doc.get("knobs") or {}).items():
            rows.append([f"`{env}`", name, k.get("default"), k.get("value"), k.get("meaning")])
    if not rows:
        return "_The results carry no knobs yet._\n"
    return md_table(["variable", "benchmark", "default", "this run", "meaning"], rows)


def region(name: str, documents: Documents, drawn: set[str], image_dir: str) -> str:
    """The generated Markdown of region ``name``."""
    if name == "summary":
        return _summary(documents)
    if name == "knobs":
        return _knobs(documents)
    document = documents.get(name)
    if document is None:
        return f"_Not run yet: `python -m bench {name}`._\n"
    results = document.get("results") if isinstance(document.get("results"), dict) else {}
    body = RENDERERS.get(name, generic)(results or {})
    images = [n for n in PLOTS_OF.get(name, []) if n in drawn]
    return "\n".join(p for p in (provenance(document), body, _images(images, image_dir)) if p)


def rewrite(text: str, render: Callable[[str], str]) -> str:
    """``text`` with the body of every marked region replaced by ``render(name)``."""

    def replace(match: re.Match[str]) -> str:
        body = render(match["name"]).rstrip("\n") + "\n"
        return f"{match.group(1)}{body}{match.group(4)}"

    out = REGION.sub(replace, text)
    if SECTION not in out.splitlines():
        pairs = "\n".join(
            f"### {name}\n\n<!-- bench:{name}:begin -->\n<!-- bench:{name}:end -->\n"
            for name in ORDER
        )
        tail = f"\n{SECTION}\n\nWritten by `python -m bench report` from docs/bench/*.json.\n\n"
        out = REGION.sub(replace, out + ("" if out.endswith("\n") else "\n") + tail + pairs)
    return out


def draw(documents: Documents, out: Path) -> set[str]:
    """Every plot whose data is present; the set of file names drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): plots not drawn")
        return set()
    drawn = set()
    for plot in _plots.PLOTS:
        name = plot(documents, out)
        if name:
            drawn.add(name)
            print(f"plot: {out / name}")
    return drawn


def build(markdown: Path, directory: Path | None = None) -> set[str]:
    """Draw the plots of ``directory``'s results and rewrite ``markdown``'s regions."""
    directory = directory or results_dir()
    documents = load_all() if directory == results_dir() else _load_from(directory)
    drawn = draw(documents, directory) if documents else set()
    image_dir = Path(os.path.relpath(directory, markdown.parent)).as_posix()
    text = markdown.read_text() if markdown.exists() else "# Benchmarks\n"
    new = rewrite(text, lambda name: region(name, documents, drawn, image_dir))
    if new != text:
        markdown.write_text(new)
        print(f"rewrote the generated regions of {markdown}")
    return drawn


def _load_from(directory: Path) -> Documents:
    previous = os.environ.get("XPEVENTS_BENCH_RESULTS")
    os.environ["XPEVENTS_BENCH_RESULTS"] = str(directory)
    try:
        return load_all()
    finally:
        if previous is None:
            del os.environ["XPEVENTS_BENCH_RESULTS"]
        else:
            os.environ["XPEVENTS_BENCH_RESULTS"] = previous


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench report")
    parser.add_argument("--markdown", type=Path, default=MARKDOWN)
    args = parser.parse_args(argv)
    build(args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
