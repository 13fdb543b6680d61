"""The relay's Prometheus metrics, in a registry of its own, served by ``make_asgi_app``.

Counters the relay owns (requests, received, spooled, refused, rejected) are updated
on the request path; forwarding counters (delivered, retried, failed, dropped) and
spool gauges are read from ``BatchDispatcher.stats()`` and the spool at scrape time,
so there is one source of truth for them. The upstream latency histogram is filled by
:class:`TimedTransport`, which wraps the HTTP transport the dispatcher sends with.
With ``--forwarder process`` the forwarding figures and the histogram are the child's
last report (:mod:`xpevents.relay.supervisor`), and the child's own CPU and memory are
``xpevents_relay_forwarder_process_*``.

The registry also holds prometheus_client's process, platform and GC collectors
(``process_*``, ``python_info``, ``python_gc_*``) and ``xpevents_build_info{version}``;
like :mod:`xpevents.metrics`, it emits no ``_created`` series (whatever
``prometheus_client.disable_created_metrics`` says: that switch is process-wide).

:class:`MetricsApp` is ``GET /metrics``: ``prometheus_client.make_asgi_app`` over the
registry (content negotiation, ``Accept-Encoding: gzip``, ``?name[]=`` filters), after
reading the forwarding statistics in a worker thread (a SQLite or Redis spool is asked
for its depth: no I/O in the event loop).
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    make_asgi_app,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from xpevents._version import __version__
from xpevents.stats import DispatchStats

__all__ = ["MetricsApp", "RelayMetrics", "UpstreamState"]

_LATENCY: Final = "xpevents_relay_upstream_request_seconds"
_LATENCY_HELP: Final = "Upstream request latency (until response headers), by region and outcome."
_LATENCY_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

_SCRAPED: contextvars.ContextVar[DispatchStats | None] = contextvars.ContextVar(
    "xpevents_relay_scraped_stats", default=None
)
"""The ``DispatchStats`` :class:`MetricsApp` read for the scrape in progress."""


class UpstreamState:
    """The last upstream outcome, for ``/readyz`` (thread-safe enough: plain attributes)."""

    def __init__(self) -> None:
        self.last_status: int | None = None
        self.last_error: str | None = None
        self.last_at: float | None = None
        self.last_success_at: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "last_status": self.last_status,
            "last_error": self.last_error,
            "last_at": self.last_at,
            "last_success_at": self.last_success_at,
        }


class RelayMetrics:
    """Every metric the relay exposes on ``GET /metrics`` (module docstring).

    Args:
        regions: upstream URL -> region label (``us``, ``eu``).
    """

    def __init__(self, regions: Mapping[str, str]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.regions = dict(regions)
        self.upstream = UpstreamState()
        # Not registered themselves: _Owned serves them without their _created series.
        self.requests = Counter(
            "xpevents_relay_requests",
            "Event API requests received, by region and HTTP status answered.",
            ["region", "status"],
            registry=None,
        )
        self.received = Counter(
            "xpevents_relay_received_visitors",
            "Visitors in valid payloads received.",
            ["region"],
            registry=None,
        )
        self.spooled = Counter(
            "xpevents_relay_spooled_visitors",
            "Visitors durably written to the spool (answered 204).",
            ["region"],
            registry=None,
        )
        self.refused = Counter(
            "xpevents_relay_refused_visitors",
            "Valid visitors answered 503 (the client keeps them and retries), by reason.",
            ["reason"],
            registry=None,
        )
        self.rejected = Counter(
            "xpevents_relay_rejected_requests",
            "Requests refused as invalid (400, 401, 408, 413, 415), by reason.",
            ["reason"],
            registry=None,
        )
        self.latency = Histogram(
            _LATENCY,
            _LATENCY_HELP,
            ["region", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=None,
        )
        self._dispatch_stats: Callable[[], DispatchStats] | None = None
        self._owned = _Owned(self)
        r = self.registry
        r.register(_BuildInfo())
        r.register(self._owned)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)  # registers itself on CPython only

    def watch(
        self,
        dispatch_stats: Callable[[], DispatchStats],
        *,
        latency: Callable[[], list[Any]] | None = None,
        pid: Callable[[], int | None] | None = None,
    ) -> None:
        """Read forwarding counters and spool gauges from ``dispatch_stats()`` at scrape.

        A forwarding child also gives ``latency`` (its histogram's samples, see
        :func:`latency_samples`), served instead of the relay's own (empty) one, and
        ``pid``, whose CPU and memory are ``xpevents_relay_forwarder_process_*``.
        """
        self._dispatch_stats = dispatch_stats
        self._owned.child_latency = latency
        self.registry.register(_ForwardingCollector(self))
        if pid is not None:
            ProcessCollector(
                namespace="xpevents_relay_forwarder", pid=_proc_name(pid), registry=self.registry
            )

    def dispatch_stats(self) -> DispatchStats | None:
        """The forwarding side's statistics now (``None`` before :meth:`watch`)."""
        source = self._dispatch_stats
        return None if source is None else source()

    def region(self, url: str) -> str:
        return self.regions.get(url, "other")

    def observe_upstream(
        self, url: str, seconds: float, *, status: int | None, error: str | None
    ) -> None:
        outcome = "error"
        if status is not None:
            outcome = "2xx" if 200 <= status < 300 else str(status)
        self.latency.labels(self.region(url), outcome).observe(seconds)
        state = self.upstream
        now = time.time()
        state.last_status = status
        state.last_error = error
        state.last_at = now
        if status is not None and 200 <= status < 300:
            state.last_success_at = now


def _proc_name(pid: Callable[[], int | None]) -> Callable[[], int | str]:
    """``pid`` for ProcessCollector: a name under ``/proc`` that is absent when no child
    runs (the collector then yields nothing)."""

    def name() -> int | str:
        n = pid()
        return "no-forwarder-process" if n is None else n

    return name


def latency_samples(histogram: Histogram) -> list[list[Any]]:
    """``histogram``'s samples as ``[name, labels, value]`` (JSON-ready, no ``_created``):
    what a forwarding child reports, and :class:`_Owned` serves in the relay."""
    return [
        [sample.name, dict(sample.labels), sample.value]
        for family in histogram.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    ]


class _BuildInfo(Collector):
    """``xpevents_build_info{version}`` 1, as :mod:`xpevents.metrics` has it."""

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "xpevents_build_info", "xpevents version (always 1).", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info


class _Owned(Collector):
    """The relay's own counters and the latency histogram, without ``_created`` series."""

    def __init__(self, metrics: RelayMetrics) -> None:
        self._metrics = metrics
        self.child_latency: Callable[[], list[Any]] | None = None

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        for metric in (m.requests, m.received, m.spooled, m.refused, m.rejected):
            yield from map(_without_created, metric.collect())
        if self.child_latency is None:
            yield from map(_without_created, m.latency.collect())
            return
        family = Metric(_LATENCY, _LATENCY_HELP, "histogram")
        for name, labels, value in self.child_latency():
            family.add_sample(name, labels, value)
        yield family


def _without_created(family: Metric) -> Metric:
    family.samples = [s for s in family.samples if not s.name.endswith("_created")]
    return family


class _ForwardingCollector(Collector):
    """The forwarding side's metrics, read from one ``DispatchStats`` per scrape."""

    def __init__(self, metrics: RelayMetrics) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()

    def collect(self) -> Iterable[Metric]:
        stats = _SCRAPED.get()  # read by MetricsApp, off the event loop
        if stats is None:
            with self._lock:
                stats = self._metrics.dispatch_stats()
        if stats is None:
            return []
        return [*_counters(stats), *_gauges(stats)]


class MetricsApp:
    """``GET /metrics``: ``prometheus_client.make_asgi_app`` over the relay's registry.

    The forwarding statistics are read in a worker thread first (they may ask the
    spool: SQLite, Redis), and the registry is then rendered from that reading.
    """

    def __init__(self, metrics: RelayMetrics) -> None:
        self._metrics = metrics
        self._app = make_asgi_app(metrics.registry)
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stats = await run_in_threadpool(self._read)
        token = _SCRAPED.set(stats)
        try:
            await self._app(scope, receive, send)
        finally:
            _SCRAPED.reset(token)

    def _read(self) -> DispatchStats | None:
        with self._lock:
            return self._metrics.dispatch_stats()


def _counters(stats: DispatchStats) -> list[Metric]:
    out: list[Metric] = [
        CounterMetricFamily(name, doc, value=value)
        for name, doc, value in (
            (
                "xpevents_relay_delivered_visitors",
                "Visitors the upstream accepted (2xx).",
                stats.delivered,
            ),
            (
                "xpevents_relay_retried_requests",
                "Upstream requests that were retries.",
                stats.retried,
            ),
            (
                "xpevents_relay_upstream_requests",
                "Upstream requests made (attempts).",
                stats.attempts,
            ),
        )
    ]
    failed = CounterMetricFamily(
        "xpevents_relay_failed_visitors",
        "Visitors given up on (dead-lettered), by reason.",
        labels=["reason"],
    )
    dropped = CounterMetricFamily(
        "xpevents_relay_dropped_visitors",
        "Visitors dropped without delivery, by reason.",
        labels=["reason"],
    )
    lost = CounterMetricFamily(
        "xpevents_relay_lost_visitors",
        "Visitors found lost after the fact (a Redis reset, a crash's commit window).",
        labels=["reason"],
    )
    out += [_by_reason(failed, stats.failed), _by_reason(dropped, stats.dropped)]
    out.append(_by_reason(lost, stats.lost))
    return out


def _gauges(stats: DispatchStats) -> list[Metric]:
    out: list[Metric] = [
        GaugeMetricFamily(name, doc, value=float(value))
        for name, doc, value in (
            ("xpevents_relay_spool_depth", "Visitors in the spool.", stats.spool_depth),
            (
                "xpevents_relay_spool_oldest_age_seconds",
                "Age of the oldest visitor in the spool (0 when empty).",
                stats.spool_oldest_age or 0.0,
            ),
            (
                "xpevents_relay_in_flight_requests",
                "Upstream requests being sent.",
                stats.in_flight,
            ),
            (
                "xpevents_relay_circuits_open",
                "Upstream URLs whose circuit breaker holds sends back.",
                stats.circuits_open,
            ),
            (
                "xpevents_relay_durability_suspended",
                "1 while the forwarding side works without its durable store.",
                int(stats.durability_suspended),
            ),
        )
    ]
    dead = GaugeMetricFamily(
        "xpevents_relay_dead_letters",
        "Visitors in the spool's dead letters, by reason.",
        labels=["reason"],
    )
    out.append(_by_reason(dead, stats.dead_letters))
    return out


def _by_reason(
    family: CounterMetricFamily | GaugeMetricFamily, counts: Mapping[str, int]
) -> Metric:
    """``family`` with one sample per reason, in reason order (a stable exposition)."""
    for reason, count in sorted(counts.items()):
        family.add_metric([reason], count)
    return family
