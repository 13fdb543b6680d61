"""The relay's ASGI application: ingest into the spool, forward with BatchDispatcher.

Routes:

* ``POST /v1/events`` and ``POST /eu/v1/events``: the event API's own request format.
  Answered ``204`` only once every visitor of the body is committed to the spool;
  ``503`` + ``Retry-After`` while the spool is full or failing (backpressure: the
  client keeps the events); ``400`` with the JSON path of the first error; ``401``
  when a token is configured and the request does not carry it; ``408``, ``413``,
  ``415`` for slow, oversize and oddly encoded bodies. The relay is a forwarder, not a
  judge: it refuses only what it cannot forward or merge
  (:mod:`xpevents.serving.ingest`); every refusal's JSON body has ``error``,
  ``reason`` and ``path``, and is counted by ``reason`` in
  ``xpevents_relay_rejected_requests_total``. Both paths accept a trailing slash.
* ``GET /datafiles/{sdk_key}.json`` and ``/datafiles/auth/{sdk_key}.json``: a datafile
  cache for every SDK on the host (:mod:`xpevents.relay.datafiles`).
* ``GET /healthz``: the process is up. ``GET /readyz``: the spool takes writes (503
  otherwise), plus the last upstream outcome. ``GET /metrics``: Prometheus
  (:mod:`xpevents.relay.metrics`; ``prometheus_client.make_asgi_app``, gzip included).

Forwarding is a :class:`~xpevents.BatchDispatcher` reading the same spool: it batches
compatible visitors, retries with backoff (``Retry-After`` honoured), dead-letters
what the upstream refuses for good, and opens a circuit on a failing upstream.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Final

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope

from xpevents.dispatch.batch import BatchDispatcher
from xpevents.errors import ConfigError, SpoolError
from xpevents.relay.committer import Committer
from xpevents.relay.datafiles import DatafileCache
from xpevents.relay.fastpath import EventFastPath
from xpevents.relay.intake import Intake
from xpevents.relay.metrics import MetricsApp, RelayMetrics
from xpevents.relay.pipeline import _forwarder, _upstream_client
from xpevents.relay.remote import RemoteForwarder
from xpevents.relay.routing import CANONICAL
from xpevents.relay.settings import DEFAULT_UPSTREAM, DEFAULT_UPSTREAM_EU, RelaySettings
from xpevents.relay.supervisor import ForwarderProcess, child_config, forwards_in_child
from xpevents.relay.writer import SpoolWriter
from xpevents.serving.direct import DirectHandler
from xpevents.serving.endpoints import (
    event_api_routes,
    healthz,
    json_response,
)
from xpevents.spool.base import Spool, spool_problem
from xpevents.spool.memory import MemorySpool
from xpevents.stats import DispatchOutcome, DispatchStats

__all__ = [
    "DEFAULT_UPSTREAM",
    "DEFAULT_UPSTREAM_EU",
    "Relay",
    "RelaySettings",
]

logger = logging.getLogger("xpevents.relay")

_WAKE_EVERY: Final = 0.02


class Relay:
    """Ingest endpoint plus forwarding pipeline over one spool.

    Args:
        store: the opened raw store (``SqliteSpool``, ``RedisSpool``, ``MemorySpool``);
            the relay writes to it directly and closes it in :meth:`close`.
        settings: see :class:`RelaySettings`.
        http_transport: an httpx transport for upstream requests (tests); default a
            pooled ``httpx.HTTPTransport`` (with ``settings.proxy`` if set).

    ``relay.app`` is the ASGI application: the event API POSTs answered by
    :meth:`ingest` directly (:mod:`xpevents.relay.fastpath`), everything else by the
    Starlette application (``relay.app.app``). Forwarding starts at once, so a
    spool left over from an earlier run is drained even before the first request.
    """

    app: ASGIApp

    def __init__(
        self,
        store: Spool,
        settings: RelaySettings | None = None,
        *,
        http_transport: httpx.BaseTransport | None = None,
        spool_url: str | None = None,
        max_event_age: float = 7 * 86400.0,
        log_level: str = "warning",
        forwarder: RemoteForwarder | None = None,
    ) -> None:
        self.settings = settings = settings or RelaySettings()
        if settings.max_body < 1:
            raise ConfigError(f"max_body={settings.max_body!r}: must be >= 1")
        # forwarder: an ingest worker of --workers N, whose supervisor forwards.
        in_child = forwarder is None and forwards_in_child(
            settings.forwarder, store, http_transport
        )
        self.store = store
        # Envelopes carry the region's canonical URL; RegionTransport sends each
        # request to the region's upstream as configured now (a backlog included).
        self.routes_to = dict(CANONICAL)
        self.metrics = RelayMetrics({settings.upstream: "us", settings.upstream_eu: "eu"})
        self._http = _upstream_client(settings, self.metrics, http_transport)
        self.dispatcher: BatchDispatcher | None = None
        self.forwarder: ForwarderProcess | RemoteForwarder | None = None
        """The supervised forwarding child (``forwarder="process"``), else ``None``."""
        if forwarder is not None:
            self._forward_elsewhere(forwarder)
        elif in_child:
            config = child_config(spool_url or store.url, settings, max_event_age, log_level)
            self._forward_elsewhere(ForwarderProcess(config))
        else:
            self.dispatcher = _forwarder(store, self._http, settings)
            self.metrics.watch(self.dispatcher.stats)
        self.writer = SpoolWriter(
            store,
            max_events=settings.max_spool_events,
            max_bytes=settings.max_spool_bytes,
            on_written=self._written,
        )
        # SQLite commits in the loop when its lock is free, Redis awaits (committer.py).
        self.committer = Committer(self.writer, inline=True)
        self.intake = Intake(
            settings, self.metrics, self.writer, self.committer, self.routes_to, self._is_closing
        )
        """From a request to its answer (:mod:`xpevents.relay.intake`)."""
        self.datafiles = DatafileCache(settings.datafile_settings())
        """``GET /datafiles/{sdk_key}.json`` for the allowed keys (``--sdk-key``)."""
        self.datafiles.start()
        self._unsignalled = 0
        self._woken_at = 0.0
        self._closing = False
        self._closed = False
        # The relay never calls dispatch_event (it appends to the spool itself), so it
        # starts the dispatcher's senders explicitly.
        if self.dispatcher is not None:
            self.dispatcher.start()
        self.app = self._application()
        if isinstance(store, MemorySpool):
            logger.warning(
                "relay spool is memory://: a 204 does NOT mean durable; events accepted "
                "and not yet forwarded are lost if the relay stops or crashes"
            )

    def _application(self) -> ASGIApp:
        """The event API POSTs on the fast path, everything else through Starlette."""
        routes = Starlette(
            routes=[
                *event_api_routes(self._ingest),
                Route("/healthz", healthz, methods=["GET"]),
                Route("/readyz", self._readyz, methods=["GET"]),
                Route("/metrics", MetricsApp(self.metrics), methods=["GET"]),
                *self.datafiles.routes(),
            ]
        )
        return EventFastPath(self.intake.ingest, routes)

    def _is_closing(self) -> bool:
        return self._closing

    # -- forwarding -----------------------------------------------------------------

    def _forward_elsewhere(self, forwarder: ForwarderProcess | RemoteForwarder) -> None:
        self.forwarder = forwarder
        # The child's figures, latency histogram and process metrics are served.
        self.metrics.watch(
            lambda: self._with_own_losses(forwarder.stats()),
            latency=forwarder.latency_samples,
            pid=lambda: forwarder.pid,
        )

    def _with_own_losses(self, reported: DispatchStats) -> DispatchStats:
        """``reported`` with the losses this process found itself, per reason the larger
        count: an append here can be the first to see a Redis reset, and the forwarding
        child, which sees it on its own, counts the same visitors."""
        try:
            own = self.store.stats(now=time.time()).lost
        except SpoolError:
            return reported
        if not own:
            return reported
        lost = dict(reported.lost)
        for reason, count in own.items():
            lost[reason] = max(lost.get(reason, 0), count)
        return replace(reported, lost=lost)

    def _written(self, n: int) -> None:
        # Wake the senders when a batch is full or at most every 20 ms: they know the
        # spool's due times otherwise, and idle ones poll it every second anyway.
        # A forwarding child is woken through its stdin (supervisor.py).
        self._unsignalled += n
        now = time.monotonic()
        if self._unsignalled >= self.settings.batch_size or now - self._woken_at >= _WAKE_EVERY:
            self._unsignalled = 0
            self._woken_at = now
            if self.dispatcher is not None:
                self.dispatcher.notify()
            elif self.forwarder is not None:
                self.forwarder.notify()

    def close(self, timeout: float | None = None) -> DispatchOutcome:
        """Forward what is due within ``timeout`` (default ``shutdown_timeout``), then stop.

        What is not delivered by then stays in a durable spool for the next start
        (``pending`` says how much). Idempotent.
        """
        if self._closed:
            return DispatchOutcome()
        self._closing = True
        self._closed = True
        self.datafiles.close()
        seconds = self.settings.shutdown_timeout if timeout is None else timeout
        self.committer.close()
        outcome = DispatchOutcome()
        if self.forwarder is not None:
            outcome = self.forwarder.stop(seconds)
        elif self.dispatcher is not None:
            outcome = self.dispatcher.close(timeout=seconds)
        if isinstance(self.store, MemorySpool):
            lost = self.store.depth
            if lost:
                logger.error(
                    "relay stopped with %d visitor(s) in its memory spool: they are lost", lost
                )
                outcome = replace(outcome, pending=max(outcome.pending, lost))
        try:
            self.store.close()
        except Exception:
            logger.exception("closing spool %s failed", self.store.url)
        self._http.close()
        return outcome

    # -- ingest ---------------------------------------------------------------------

    async def _ingest(self, request: Request, region: str) -> Response:
        """The Starlette routes' handler (the fast path normally answers first)."""
        return await self.ingest(request.scope, request.receive, region)

    async def ingest(self, scope: Scope, receive: Receive, region: str) -> Response:
        """Answer one event API request of ``region`` from its raw ASGI scope and receive
        (:meth:`Intake.ingest <xpevents.relay.intake.Intake.ingest>`)."""
        return await self.intake.ingest(scope, receive, region)

    def direct_routes(self) -> dict[bytes, DirectHandler]:
        """The event API paths answered by the HTTP protocol itself
        (:mod:`xpevents.serving.direct`), with the same answers as :meth:`ingest`."""
        return self.intake.direct_routes()

    # -- health and metrics ---------------------------------------------------------

    async def _readyz(self, request: Request) -> Response:
        return await run_in_threadpool(self._readiness)

    def _readiness(self) -> Response:
        writer = self.writer
        problems: list[str] = []
        depth: int | None = None
        try:
            depth = self.store.stats(now=time.time()).depth
            full = writer.full()
        except SpoolError as exc:
            problems.append(f"spool unreadable: {exc}")
            full = False
        problem = spool_problem(self.store)
        if problem is not None:
            problems.append(problem)
        elif writer.failing():
            problems.append(f"spool write failed: {writer.last_error}")
        if full:
            problems.append("spool full")
        if self._closing:
            problems.append("shutting down")
        upstream = self.metrics.upstream.as_dict()
        forwarder: dict[str, object] = {"mode": "thread"}
        if self.forwarder is not None:
            if (trouble := self.forwarder.problem()) is not None and not self._closing:
                problems.append(trouble)
            forwarder, upstream = self.forwarder.as_dict(), self.forwarder.upstream()
        body = {
            "ready": not problems,
            "problems": problems,
            "spool": {
                "url": self.store.url,
                "durable": self.store.durable,
                "depth": depth,
                "full": full,
                "last_write_at": writer.last_write_at,
                "last_error": writer.last_error,
                "last_error_at": writer.last_error_at,
            },
            "upstream": upstream,
            "forwarder": forwarder,
        }
        return json_response(body, 503 if problems else 200)
