"""The relay's Prometheus metrics, in a registry of its own.

Counters the relay owns (requests, received, spooled, refused, rejected) are updated
on the request path; forwarding counters (delivered, retried, failed, dropped) and
spool gauges are read from ``BatchDispatcher.stats()`` and the spool at scrape time,
so there is one source of truth for them. The upstream latency histogram is filled by
:class:`TimedTransport`, which wraps the HTTP transport the dispatcher sends with.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Final

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from xpevents.stats import DispatchStats

__all__ = ["RelayMetrics", "TimedTransport", "UpstreamState"]

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
    """Every metric the relay exposes on ``GET /metrics``.

    Args:
        regions: upstream URL -> region label (``us``, ``eu``).
    """

    def __init__(self, regions: Mapping[str, str]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.regions = dict(regions)
        self.upstream = UpstreamState()
        r = self.registry
        self.requests = Counter(
            "xpevents_relay_requests",
            "Event API requests received, by region and HTTP status answered.",
            ["region", "status"],
            registry=r,
        )
        self.received = Counter(
            "xpevents_relay_received_visitors",
            "Visitors in valid payloads received.",
            ["region"],
            registry=r,
        )
        self.spooled = Counter(
            "xpevents_relay_spooled_visitors",
            "Visitors durably written to the spool (answered 204).",
            ["region"],
            registry=r,
        )
        self.refused = Counter(
            "xpevents_relay_refused_visitors",
            "Valid visitors answered 503 (the client keeps them and retries), by reason.",
            ["reason"],
            registry=r,
        )
        self.rejected = Counter(
            "xpevents_relay_rejected_requests",
            "Requests refused as invalid (400, 401, 408, 413, 415), by reason.",
            ["reason"],
            registry=r,
        )
        self.latency = Histogram(
            "xpevents_relay_upstream_request_seconds",
            "Upstream request latency (until response headers), by region and outcome.",
            ["region", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._dispatch_stats: Callable[[], DispatchStats] | None = None

    def watch(self, dispatch_stats: Callable[[], DispatchStats]) -> None:
        """Read forwarding counters and spool gauges from ``dispatch_stats()`` at scrape."""
        self._dispatch_stats = dispatch_stats
        self.registry.register(_ForwardingCollector(self))

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


class _ForwardingCollector(Collector):
    """The forwarding side's metrics, read from one ``DispatchStats`` per scrape."""

    def __init__(self, metrics: RelayMetrics) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()

    def collect(self) -> Iterable[Metric]:
        source = self._metrics._dispatch_stats
        if source is None:
            return []
        with self._lock:
            stats = source()
        return [*_counters(stats), *_gauges(stats)]


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


class TimedTransport(httpx.BaseTransport):
    """An httpx transport that times each upstream request and records its outcome."""

    def __init__(self, inner: httpx.BaseTransport, metrics: RelayMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        started = time.perf_counter()
        try:
            response = self._inner.handle_request(request)
        except Exception as exc:
            self._metrics.observe_upstream(
                url, time.perf_counter() - started, status=None, error=repr(exc)
            )
            raise
        self._metrics.observe_upstream(
            url,
            time.perf_counter() - started,
            status=response.status_code,
            error=None if response.status_code < 400 else f"HTTP {response.status_code}",
        )
        return response

    def close(self) -> None:
        self._inner.close()
