"""The collector's ASGI application (Starlette): the event API endpoints plus control.

Routes:

* ``POST /v1/events`` (region ``us``) and ``POST /eu/v1/events`` (region ``eu``):
  fault injection first, then the body is read (``Content-Encoding: gzip`` accepted,
  size-limited before and after decompression), validated against
  :mod:`xpevents.serving.schema`, de-duplicated and stored; ``204`` on success.
* ``GET /`` (the dashboard), ``GET /metrics``: :mod:`xpevents.collector.dashboard`;
* ``GET /stats``, ``GET /events`` (filters: :mod:`~xpevents.collector.dashboard.queries`),
  ``GET|POST /control``, ``POST /reset``, ``GET /healthz``.
* ``PUT|POST|GET|DELETE /datafiles/{sdk_key}.json`` and ``GET /datafiles/auth/{sdk_key}.json``:
  a CDN-like datafile server (:mod:`xpevents.collector.datafiles`).

Dropping a connection without a response needs help from the server: the collector's
own HTTP protocol (:mod:`xpevents.collector.server`) puts an abort callable into
``scope["extensions"]["xpevents.abort"]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Final

import msgspec
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from xpevents.collector.dashboard import Dashboard
from xpevents.collector.datafiles import ERROR_PAGE, DatafileShelf, datafile_routes
from xpevents.collector.faults import Fault, FaultInjector, FaultSettings, FaultUpdate
from xpevents.collector.loose import LoosePayload, decode_loose, number, text
from xpevents.collector.stats import NULL_VARIATION, CollectorStats
from xpevents.collector.store import EventStore, StoredEvent
from xpevents.decide.datafile import ProjectConfig
from xpevents.errors import BodyRejected, ConfigError, PayloadSchemaError
from xpevents.serving.body import read_body
from xpevents.serving.endpoints import event_api_routes, healthz, json_response, rejected
from xpevents.serving.ingest import split_body
from xpevents.serving.schema import (
    ACTIVATE_EVENT_KEY,
    decode_payload,
    schema_error,
)

__all__ = ["ABORT_EXTENSION", "DEFAULT_MAX_BODY", "STRICT_MODES", "Collector"]

logger = logging.getLogger("xpevents.collector.app")

DEFAULT_MAX_BODY: Final = 3_500_000
"""The event API's request size limit, in bytes (also applied after decompression)."""

STRICT_MODES: Final = ("off", "warn", "refuse")
"""``off``: accept what the Event API accepts; ``warn``: also check the schema and
report its errors in ``/stats``; ``refuse``: answer them 400."""

ABORT_EXTENSION: Final = "xpevents.abort"
"""ASGI scope extension holding ``{"abort": callable}`` that closes the connection."""


_CONTROL: Final = msgspec.json.Decoder(FaultUpdate)


class Collector:
    """State and ASGI app of one collector: store, stats and fault injector.

    Args:
        db: SQLite file for the events, or ``None`` for an in-memory database.
        max_body: largest accepted body in bytes, raw and after decompression.
        faults: initial fault injection settings.
        strict: one of :data:`STRICT_MODES` (default ``"off"``: lenient, as the Event
            API; ``"warn"``: schema errors become ``schema_warnings`` in ``/stats``;
            ``"refuse"``: they are answered 400 with their JSON path).
        read_timeout: seconds a client may take to send its body (408 after).
        datafile: the project's datafile (keys and traffic allocation for the dashboard).

    ``collector.app`` is the Starlette application; serve it with
    :class:`xpevents.collector.server.CollectorServer` (which supports dropped
    connections) or any ASGI server. Call :meth:`close` when done.
    """

    def __init__(
        self,
        *,
        db: str | Path | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        faults: FaultSettings | None = None,
        strict: str = "off",
        read_timeout: float = 10.0,
        datafile: ProjectConfig | None = None,
    ) -> None:
        if max_body < 1:
            raise ConfigError(f"max_body must be a positive number of bytes, got {max_body!r}")
        if strict not in STRICT_MODES:
            raise ConfigError(f"strict={strict!r}: expected one of {', '.join(STRICT_MODES)}")
        if not read_timeout > 0:
            raise ConfigError(f"read_timeout={read_timeout!r}: must be > 0 seconds")
        self.max_body = max_body
        self.strict = strict
        self.read_timeout = read_timeout
        self.store = EventStore(db)
        self.stats = CollectorStats()
        self.faults = FaultInjector(faults)
        self.datafiles = DatafileShelf()
        """The datafiles served on ``/datafiles/`` (see :mod:`xpevents.collector.datafiles`)."""
        self.dashboard = Dashboard(self, datafile)
        self.app = Starlette(
            middleware=self.dashboard.middleware(),
            routes=[
                *self.dashboard.routes(),
                *event_api_routes(self._handle_events),
                *datafile_routes(self.datafiles, self.faults, _abort_callable),
                Route("/stats", self._stats, methods=["GET"]),
                Route("/events", self._events, methods=["GET"]),
                Route("/control", self._control, methods=["GET", "POST"]),
                Route("/reset", self._reset, methods=["POST"]),
                Route("/healthz", healthz, methods=["GET"]),
            ],
        )

    def close(self) -> None:
        """Close the event store."""
        self.store.close()

    # -- event API ---------------------------------------------------------------

    async def _handle_events(self, request: Request, region: str) -> Response:
        stats = self.stats
        stats.requests += 1
        stats.requests_by_region[region] += 1
        if self.faults.active:
            fault_response = await self._inject_fault(request)
            if fault_response is not None:
                return fault_response
        try:
            body = await self._read_body(request)
            response = self._accept(body, region)
        except BodyRejected as exc:
            if exc.status == 413:
                stats.too_large += 1
            else:
                stats.invalid_payloads += 1
            stats.rejected[exc.reason] += 1
            # at WARNING: an SDK sending broken payloads is what people run this to see
            logger.warning("%d POST %s refused: %s", exc.status, request.url.path, exc.error)
            response = rejected(exc)
        except ClientDisconnect:
            logger.debug("client went away while sending its body")
            return Response(status_code=400)  # nobody is listening
        stats.requests_by_status[response.status_code] += 1
        return response

    async def _inject_fault(self, request: Request) -> Response | None:
        settings = self.faults.settings
        if settings.latency_ms:
            await asyncio.sleep(settings.latency_ms / 1000)
        fault = self.faults.draw()
        if fault is Fault.NONE:
            return None
        stats = self.stats
        stats.faults[fault.value] += 1
        if fault is Fault.DROP:
            stats.dropped_connections += 1
            abort = _abort_callable(request)
            if abort is not None:
                # Read the request to its end first: closing a socket with unread data
                # sends a TCP reset, and the client should see a clean close with no
                # response (the "request delivered, answer lost" case) every time.
                await self._discard_body(request)
                abort()
                return Response(status_code=500)  # never sent: the connection is gone
            logger.warning("drop_rate needs the collector's own server; answering 500")
            stats.requests_by_status[500] += 1
            return json_response(
                {"error": "injected fault: drop (unsupported by this server)"}, 500
            )
        if fault is Fault.HTML_200:
            stats.requests_by_status[200] += 1
            return HTMLResponse(ERROR_PAGE)
        if fault is Fault.HTTP_429:
            stats.requests_by_status[429] += 1
            return json_response(
                {"error": "injected fault: rate limited"},
                429,
                {"Retry-After": format(settings.retry_after, "g")},
            )
        status = 500 if fault is Fault.HTTP_500 else 503
        stats.requests_by_status[status] += 1
        return json_response({"error": f"injected fault: {status}"}, status)

    async def _discard_body(self, request: Request) -> None:
        received = 0
        with contextlib.suppress(ClientDisconnect):
            async for chunk in request.stream():
                received += len(chunk)
                if received > self.max_body:
                    break

    async def _read_body(self, request: Request) -> bytes:
        stats = self.stats

        def count(size: int) -> None:
            stats.bytes_received += size

        return await read_body(
            request, max_body=self.max_body, timeout=self.read_timeout, on_chunk=count
        )

    def _accept(self, body: bytes, region: str) -> Response:
        try:
            raw_visitors = split_body(body)[1]  # what no receiver could take
            payload = decode_loose(body)  # what the Event API needs: uuid and timestamp
            if self.strict != "off":
                self._check_schema(body, payload)
        except PayloadSchemaError as exc:
            raise BodyRejected(400, str(exc), exc.path, exc.reason) from None
        stored = self.store.add(region, payload, raw_visitors)
        stats = self.stats
        stats.payloads += 1
        stats.visitors += len(payload.visitors)
        events = sum(len(s.events) for v in payload.visitors for s in v.snapshots)
        stats.events += events
        stats.unique_events += len(stored)
        stats.duplicates += events - len(stored)
        self._count(stored)
        if logger.isEnabledFor(logging.INFO):  # like python -m http.server: one line each
            logger.info(
                "204 /%s %d visitor(s), %d event(s) (%d new) client=%s/%s",
                region,
                len(payload.visitors),
                events,
                len(stored),
                text(payload.client_name),
                text(payload.client_version),
            )
        return Response(status_code=204)

    def _check_schema(self, body: bytes, payload: LoosePayload) -> None:
        """Strict mode: the schema's first JSON-path error, as a warning or a refusal."""
        try:
            decode_payload(body)
        except PayloadSchemaError as exc:
            if self.strict == "refuse":
                raise
            client = f"{text(payload.client_name)}/{text(payload.client_version)}"
            self.stats.warn(exc.path, exc.detail, client)

    def _count(self, stored: list[StoredEvent]) -> None:
        stats = self.stats
        impressions = stats.impressions
        for snapshot, event in stored:
            if event.key == ACTIVATE_EVENT_KEY:
                for decision in snapshot.decisions:
                    variation = text(decision.variation_id)
                    impressions[text(decision.experiment_id) or NULL_VARIATION][
                        NULL_VARIATION if variation is None else variation
                    ] += 1
            else:
                key = text(event.key) or ""
                stats.conversions[key] += 1
                revenue = number(event.revenue)
                if revenue is not None:
                    stats.revenue[key] += revenue

    # -- control -----------------------------------------------------------------

    async def _stats(self, request: Request) -> Response:
        return json_response({**self.stats.snapshot(), **self.dashboard.stats_extra()})

    async def _events(self, request: Request) -> Response:
        return await self.dashboard.events(request)

    async def _control(self, request: Request) -> Response:
        if request.method == "POST":
            if (form_response := await self.dashboard.control_form(request)) is not None:
                return form_response
            try:
                update = _CONTROL.decode(await request.body())
                settings = update.apply(self.faults.settings)
            except RecursionError:
                return json_response({"error": "JSON nested too deeply", "path": "$"}, 400)
            except msgspec.MsgspecError as exc:
                error = schema_error(exc)
                return json_response({"error": error.detail, "path": error.path}, 400)
            except ConfigError as exc:
                return json_response({"error": str(exc)}, 400)
            self.faults.configure(settings, reseed=update.seed is not msgspec.UNSET)
        return json_response(self.faults.settings.to_dict())

    async def _reset(self, request: Request) -> Response:
        self.store.clear()
        self.stats.reset()
        logger.info("events and stats reset")
        return json_response({"reset": True})


def _abort_callable(request: Request) -> Callable[[], None] | None:
    extensions = request.scope.get("extensions") or {}
    ext = extensions.get(ABORT_EXTENSION)
    if isinstance(ext, dict):
        abort = ext.get("abort")
        if callable(abort):
            return abort  # type: ignore[no-any-return]
    return None
