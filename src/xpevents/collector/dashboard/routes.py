"""The dashboard's routes: ``GET /``, its feed and static files, ``GET /metrics``, the
filtered ``GET /events`` and the HTML form flavour of ``POST /control``."""

from __future__ import annotations

import urllib.parse
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

import msgspec
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from xpevents._internal.names import unknown
from xpevents.collector.dashboard import render
from xpevents.collector.dashboard.experiments import ExperimentTally, KeyNames
from xpevents.collector.dashboard.metrics import CONTENT_TYPE, metrics_registry
from xpevents.collector.dashboard.metrics import render as render_metrics
from xpevents.collector.dashboard.queries import STATUSES, EventQuery, QueryError, parse_query
from xpevents.collector.dashboard.rows import event_row, request_row
from xpevents.collector.dashboard.timeline import RequestObserver, Timeline
from xpevents.collector.faults import FaultUpdate
from xpevents.decide.datafile import ProjectConfig
from xpevents.errors import ConfigError
from xpevents.serving.endpoints import json_response

if TYPE_CHECKING:
    from xpevents.collector.app import Collector

__all__ = ["CSP", "Dashboard"]

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
"""Content-Security-Policy of the page: no inline script or style, nothing off-site."""

PAGE_ROWS: Final = 100
POLL_MS: Final = 1000
_STATIC: Final = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
_HEADERS: Final = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}
_FORM: Final = "application/x-www-form-urlencoded"


class Dashboard:
    """The collector's HTML dashboard and the read-only views it uses.

    Args:
        collector: the collector whose store, stats and faults are shown.
        datafile: the project's datafile, to map ids to keys and check sample ratios.
    """

    def __init__(self, collector: Collector, datafile: ProjectConfig | None = None) -> None:
        self.collector = collector
        self.datafile = datafile
        self.timeline = Timeline(collector.stats)
        self.registry = metrics_registry(collector.stats)
        self._names = KeyNames(collector.store, datafile)
        self.tally = ExperimentTally(collector.store, datafile)

    def middleware(self) -> list[Middleware]:
        """Middleware to give the collector's Starlette app (outcome recording)."""
        return [Middleware(RequestObserver, timeline=self.timeline, on_reset=self.tally.reset)]

    def routes(self) -> list[Route]:
        """``GET /``, ``/dashboard/feed``, ``/dashboard/static/{name}``, ``/metrics``."""
        return [
            Route("/", self._page, methods=["GET"]),
            Route("/dashboard/feed", self._feed, methods=["GET"]),
            Route("/dashboard/static/{name}", self._static, methods=["GET"]),
            Route("/metrics", self._metrics, methods=["GET"]),
        ]

    # -- data ------------------------------------------------------------------------

    def stats_extra(self) -> dict[str, Any]:
        """Fields added to ``GET /stats``: impressions keyed by experiment/variation keys."""
        impressions = {e: dict(v) for e, v in self.collector.stats.impressions.items()}
        return {"impressions_by_key": self._names.impressions_by_key(impressions)}

    def query_events(self, query: EventQuery) -> list[dict[str, Any]]:
        """Stored events matching ``query`` (as ``GET /events`` answers them)."""
        where, params = query.sql(self.datafile)
        return self.collector.store.events(
            query.limit,
            query.offset,
            raw=query.raw,
            where=where,
            params=params,
            newest_first=query.order == "desc",
        )

    def _rows(self, query: EventQuery, after_seq: int = 0) -> list[dict[str, Any]]:
        rows = [event_row(e, self.datafile) for e in self.query_events(query)]
        event_filters = query.visitor or query.key or query.experiment or query.type
        if not event_filters and query.status != "accepted":
            rows += [
                request_row(r)
                for r in self.timeline.requests
                if r["seq"] > after_seq and query.status in (None, r["outcome"])
            ]
        rows.sort(key=lambda r: float(r["at"]), reverse=True)
        return rows[: query.limit]

    def _state(self) -> dict[str, Any]:
        return {
            "stats": self.collector.stats.snapshot(),
            "series": self.timeline.series(),
            "experiments": self.tally.summaries(),
            "strict": self.collector.strict,
        }

    # -- handlers --------------------------------------------------------------------

    async def _page(self, request: Request) -> Response:
        try:
            query = parse_query(request.query_params, order="desc")
        except QueryError as exc:
            return HTMLResponse(f"<p>{render.esc(exc)}</p>", 400, headers=_HEADERS)
        query = msgspec.structs.replace(query, limit=min(query.limit, PAGE_ROWS))
        state = self._state()
        body = render.page(
            poll_ms=str(POLL_MS),
            datafile_note=render.esc(
                "datafile: revision " + self.datafile.revision if self.datafile else "no datafile"
            ),
            counters=render.counters(state["stats"]),
            chart=render.chart_svg(state["series"]),
            experiments=render.experiments(state["experiments"]),
            warnings=render.warnings(self.collector.strict, state["stats"]),
            fault_fields=render.fault_fields(self.collector.faults.settings.to_dict()),
            filter_fields=render.filter_fields(query.filters(), STATUSES),
            rows="".join(render.row_html(r) for r in self._rows(query)),
        )
        return HTMLResponse(body, headers=_HEADERS)

    async def _feed(self, request: Request) -> Response:
        """Rows newer than ``after``/``after_seq`` plus counters, series and experiments."""
        params = dict(request.query_params)
        after_seq = params.pop("after_seq", "0")
        try:
            query = parse_query(params, order="desc")
            seq = int(after_seq)
        except (QueryError, ValueError) as exc:
            return json_response({"error": str(exc)}, 400)
        query = msgspec.structs.replace(query, limit=min(query.limit, PAGE_ROWS))
        rows = self._rows(query, seq)
        state = self._state()
        # Event ids restart at 1 after POST /reset: the page starts over when this changes.
        state["started_at"] = self.collector.stats.started_at
        return json_response({"rows": rows, **state})

    async def _static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return json_response({"error": f"no static file {name!r}"}, 404)
        data = resources.files(__package__).joinpath("static", name).read_bytes()
        return Response(data, media_type=_STATIC[name], headers=_HEADERS)

    async def _metrics(self, request: Request) -> Response:
        return Response(render_metrics(self.registry), media_type=CONTENT_TYPE)

    async def events(self, request: Request) -> Response:
        """``GET /events`` with its filters (see :mod:`.queries`); ``400`` names a bad one."""
        try:
            query = parse_query(request.query_params)
        except QueryError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response(self.query_events(query))

    async def control_form(self, request: Request) -> Response | None:
        """``POST /control`` from the HTML form: apply it, then back to ``/`` (303).

        ``None`` when the request is not a form (the JSON API handles it). Empty fields
        are left unchanged; a bad value answers ``400`` naming the field; a form sent
        from another origin (``Origin`` header naming another host) answers ``403``.
        """
        if request.headers.get("content-type", "").split(";")[0].strip() != _FORM:
            return None
        origin = request.headers.get("origin")
        if origin and urllib.parse.urlsplit(origin).netloc != request.headers.get("host"):
            # another site's page posting a form to a collector on this machine
            return HTMLResponse("<p>cross-origin form refused</p>", 403, headers=_HEADERS)
        fields = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"))
        changes: dict[str, Any] = {}
        try:
            for name, values in fields.items():
                if name not in FaultUpdate.__struct_fields__:
                    raise ConfigError(unknown("fault setting", name, FaultUpdate.__struct_fields__))
                text = values[-1].strip()
                if text and text != "None":
                    changes[name] = int(text) if name == "seed" else float(text)
            update = FaultUpdate(**changes)
            settings = update.apply(self.collector.faults.settings)
        except (ConfigError, ValueError) as exc:
            return HTMLResponse(
                f"<p>{render.esc(exc)}</p><p><a href='/'>back</a></p>", 400, headers=_HEADERS
            )
        self.collector.faults.configure(settings, reseed="seed" in changes)
        return RedirectResponse("/", status_code=303)
