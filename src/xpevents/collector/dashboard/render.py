"""Server-side HTML of the dashboard: every interpolated value goes through :func:`esc`.

The page works without JavaScript (counters, chart, experiments and table as of the
request; the filter form is a plain GET, the fault form a plain POST to ``/control``);
``dashboard.js`` then keeps it live.
"""

from __future__ import annotations

import html
from importlib import resources
from string import Template
from typing import Any, Final

__all__ = ["chart_svg", "esc", "page"]

CHART_W: Final = 600
CHART_H: Final = 120
_OUTCOMES: Final = ("accepted", "duplicate", "rejected", "fault")
_COUNTERS: Final = (
    ("requests", "requests"),
    ("payloads", "payloads"),
    ("visitors", "visitors"),
    ("events", "events"),
    ("unique_events", "stored"),
    ("duplicates", "duplicates"),
    ("invalid_payloads", "rejected"),
    ("faults_total", "faults"),
)
_FAULT_FIELDS: Final = (
    ("latency_ms", "latency (ms)"),
    ("fail_rate", "500/503 rate"),
    ("rate_429", "429 rate"),
    ("retry_after", "Retry-After (s)"),
    ("drop_rate", "drop rate"),
    ("seed", "seed"),
)
_ROW_CELLS: Final = (
    "time",
    "type",
    "visitor",
    "experiment",
    "variation",
    "key",
    "amount",
    "client",
    "status",
)


def esc(value: Any) -> str:
    """``value`` as text safe in HTML content and in quoted attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def _template() -> Template:
    text = resources.files(__package__).joinpath("templates/page.html").read_text("utf-8")
    return Template(text)


def counters(stats: dict[str, Any]) -> str:
    """The ``<dl>`` items of the headline counters."""
    values = {**stats, "faults_total": sum(stats.get("faults", {}).values())}
    return "".join(
        f'<div><dt>{esc(label)}</dt><dd data-stat="{esc(name)}">{esc(values.get(name, 0))}</dd>'
        "</div>"
        for name, label in _COUNTERS
    )


def chart_svg(series: list[dict[str, int]]) -> str:
    """An inline SVG line chart of ``series`` (one polyline per outcome)."""
    top = max([1, *(p[o] for p in series for o in _OUTCOMES)])
    step = CHART_W / max(1, len(series) - 1)
    lines = []
    for outcome in _OUTCOMES:
        points = " ".join(
            f"{i * step:.1f},{CHART_H - p[outcome] * (CHART_H - 4) / top:.1f}"
            for i, p in enumerate(series)
        )
        lines.append(f'<polyline class="{outcome}" points="{points}"/>')
    return (
        f'<svg id="chart-svg" width="{CHART_W}" height="{CHART_H}" '
        f'viewBox="0 0 {CHART_W} {CHART_H}" role="img" aria-label="events per second">'
        f'<text x="4" y="12" font-size="10" id="chart-max">max {top}/s</text>'
        f"{''.join(lines)}</svg>"
    )


def _percent(share: float | None) -> str:
    return "" if share is None else f"{share * 100:.1f}%"


def _srm_text(srm: dict[str, Any] | None) -> tuple[str, str]:
    if srm is None:
        return "srm-none", "SRM check: needs the datafile (--datafile) and impressions"
    verdict = "MISMATCH" if srm["mismatch"] else "ok"
    if srm["too_few"] and not srm["mismatch"]:
        verdict = "not yet testable (fewer than 5 impressions expected in a variation)"
    text = f"SRM {verdict}: chi-square {srm['chi_square']:.3f}, dof {srm['dof']}, p = "
    text += f"{srm['p_value']:.3g}"
    return ("srm-bad" if srm["mismatch"] else "srm-ok"), text


def experiments(summaries: list[dict[str, Any]]) -> str:
    """One table per experiment summary."""
    if not summaries:
        return "<p>No impressions yet.</p>"
    parts = []
    for s in summaries:
        css, srm = _srm_text(s["srm"])
        rows = "".join(
            f"<tr><td>{esc(v['key'])}</td><td class=num>{esc(v['impressions'])}</td>"
            f"<td class=num>{esc(_percent(v['share']))}</td>"
            f"<td class=num>{esc(_percent(v['expected_share']))}</td>"
            f"<td class=num>{esc(v['conversions'])}</td><td class=num>{esc(v['revenue'])}</td>"
            f"<td class=num>{esc(round(v['value'], 4))}</td></tr>"
            for v in s["variations"].values()
        )
        parts.append(
            f'<div class="exp" data-experiment="{esc(s["key"])}"><h3>{esc(s["key"])} '
            f'<span class="sub">{esc(s["experiment_id"])} · {esc(s["impressions"])} '
            f'impressions</span></h3><p class="{css}">{esc(srm)}</p>'
            "<table><thead><tr><th>variation</th><th>impressions</th><th>split</th>"
            "<th>expected</th><th>conversions</th><th>revenue</th><th>value</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )
    return "".join(parts)


def fault_fields(settings: dict[str, Any]) -> str:
    """The fault form's inputs, filled with the settings in force."""
    return "".join(
        f'<label>{esc(label)}<input name="{esc(name)}" value="{esc(settings.get(name))}" '
        'inputmode="decimal"></label>'
        for name, label in _FAULT_FIELDS
    )


def _select(name: str, current: str | None, choices: tuple[str, ...]) -> str:
    options = "".join(
        f'<option value="{esc(c)}"{" selected" if c == current else ""}>{esc(c or "any")}</option>'
        for c in ("", *choices)
    )
    return f'<label>{esc(name)}<select name="{esc(name)}">{options}</select></label>'


def filter_fields(filters: dict[str, str], statuses: tuple[str, ...]) -> str:
    """The filter form's inputs, filled with the filters in force."""
    texts = "".join(
        f'<label>{esc(n)}<input name="{esc(n)}" value="{esc(filters.get(n, ""))}"></label>'
        for n in ("visitor", "key", "experiment")
    )
    return (
        texts
        + _select("type", filters.get("type"), ("impression", "conversion"))
        + _select("status", filters.get("status"), statuses)
    )


def row_html(row: dict[str, Any]) -> str:
    """One ``<tr>`` of the live table (event or request row)."""
    css = "event" if row["type"] != "request" else f"request {row['outcome']}"
    cells = "".join(f'<td class="{c}">{esc(row[c])}</td>' for c in _ROW_CELLS)
    raw = f"<details><summary>raw</summary><pre>{esc(row['raw'])}</pre></details>"
    return f'<tr class="{esc(css)}">{cells}<td>{raw}</td></tr>'


def warnings(mode: str, stats: dict[str, Any]) -> str:
    """The strict-mode panel: schema deviations by path, and the latest with their client."""
    if mode == "off":
        return (
            '<p class="sub">strict mode off: run <code>xpevents collector --strict</code> to '
            "list payloads that deviate from the Event API's schema here.</p>"
        )
    by_path: dict[str, int] = stats.get("schema_warnings") or {}
    if not by_path:
        return f'<p class="sub">strict mode {esc(mode)}: no deviation seen.</p>'
    lines = "".join(
        f'<tr class="warning"><td>{esc(path)}</td><td>{esc(count)}</td></tr>'
        for path, count in sorted(by_path.items(), key=lambda item: -item[1])
    )
    recent = "".join(
        f'<tr class="warning"><td>{esc(w.get("path"))}</td><td>{esc(w.get("error"))}</td>'
        f"<td>{esc(w.get('client'))}</td></tr>"
        for w in reversed(stats.get("recent_schema_warnings") or [])
    )
    return (
        f'<p class="warning-note">strict mode {esc(mode)}: payloads deviate from the Event API '
        "(an SDK bug to report; the events were "
        f"{'refused' if mode == 'refuse' else 'accepted'})</p>"
        f"<table><thead><tr><th>path</th><th>count</th></tr></thead><tbody>{lines}</tbody></table>"
        "<table><thead><tr><th>path</th><th>error</th><th>client</th></tr></thead>"
        f"<tbody>{recent}</tbody></table>"
    )


def page(**parts: str) -> str:
    """The whole page from its already escaped parts."""
    return _template().substitute(parts)
