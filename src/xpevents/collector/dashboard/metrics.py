"""``GET /metrics``: the collector's counters in Prometheus text format.

Read from :class:`~xpevents.collector.stats.CollectorStats` at scrape time, into a
registry of the collector's own (not prometheus_client's global one). Names start with
``xpevents_collector_``; counters end in ``_total`` and have no ``_created`` series.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from xpevents.collector.stats import CollectorStats

__all__ = ["CONTENT_TYPE", "CollectorMetrics", "metrics_registry"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
PREFIX: Final = "xpevents_collector"

_COUNTERS: Final = (
    ("payloads", "payloads", "Requests whose payload was accepted."),
    ("visitors", "visitors", "Visitors in accepted payloads."),
    ("events", "events", "Events in accepted payloads (duplicates included)."),
    ("unique_events", "unique_events", "Events stored (first time seen)."),
    ("duplicates", "duplicate_events", "Events already stored (de-duplicated)."),
    ("invalid_payloads", "invalid_payloads", "Requests refused as not an event payload."),
    ("too_large", "too_large_requests", "Requests refused as too large (413)."),
    ("dropped_connections", "dropped_connections", "Connections closed with no response."),
    ("bytes_received", "received_bytes", "Request body bytes read."),
)


class CollectorMetrics(Collector):
    """A Prometheus collector over one :class:`CollectorStats`."""

    def __init__(self, stats: CollectorStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        """The metric families, read now."""
        stats = self._stats
        requests = CounterMetricFamily(
            f"{PREFIX}_requests", "Events requests by HTTP status.", labels=["status"]
        )
        for status, n in sorted(stats.requests_by_status.items()):
            requests.add_metric([str(status)], n)
        yield requests
        regions = CounterMetricFamily(
            f"{PREFIX}_region_requests", "Events requests by region.", labels=["region"]
        )
        for region, n in sorted(stats.requests_by_region.items()):
            regions.add_metric([region], n)
        yield regions
        for attr, name, doc in _COUNTERS:
            yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=getattr(stats, attr))
        faults = CounterMetricFamily(
            f"{PREFIX}_faults", "Injected faults by kind.", labels=["fault"]
        )
        for fault, n in sorted(stats.faults.items()):
            faults.add_metric([fault], n)
        yield faults
        conversions = CounterMetricFamily(
            f"{PREFIX}_conversions", "Stored conversion events by event key.", labels=["key"]
        )
        for key, n in sorted(stats.conversions.items()):
            conversions.add_metric([key], n)
        yield conversions
        yield GaugeMetricFamily(
            f"{PREFIX}_start_time_seconds",
            "Unix time of the start or last reset.",
            value=stats.started_at,
        )


def metrics_registry(stats: CollectorStats) -> CollectorRegistry:
    """A fresh registry holding only :class:`CollectorMetrics` over ``stats``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CollectorMetrics(stats))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus text format."""
    return generate_latest(registry)
