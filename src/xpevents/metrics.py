"""Prometheus metrics for the dispatchers inside your application.

::

    from xpevents import BatchDispatcher
    from xpevents.metrics import register

    dispatcher = BatchDispatcher()
    register(dispatcher)                    # into prometheus_client's default REGISTRY
    # serve it as usual: prometheus_client.start_http_server(9100), make_asgi_app(), ...

Every value is read from ``dispatcher.stats()`` at scrape time (one source of truth, no
cost on the event path). Names follow the relay's (``xpevents_relay_*`` there,
``xpevents_dispatch_*`` here) and Prometheus conventions: counters end in ``_total``,
durations in ``_seconds``, reasons are a ``reason`` label, each dispatcher is told apart by a
``dispatcher`` label, and ``xpevents_build_info{version}`` is 1. No ``_created`` series are
emitted for these counters. A dispatcher that is garbage-collected drops out of the
scrape (weak references).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from xpevents._version import __version__
from xpevents.errors import ConfigError
from xpevents.stats import DispatchStats

__all__ = ["DispatcherMetrics", "register"]

PREFIX = "xpevents_dispatch"

_COUNTERS = (
    ("calls", "dispatch_event calls received."),
    ("visitors", "Visitors received through dispatch_event."),
    ("enqueued", "Visitors accepted into the queue."),
    ("attempts", "HTTP requests made (first attempts and retries)."),
    ("retried", "HTTP requests that retried an earlier failed attempt."),
    ("delivered", "Visitors the endpoint accepted (2xx)."),
    ("batches_sent", "Requests the endpoint accepted (2xx)."),
    ("bytes_sent", "Request body bytes of every attempt."),
    ("callback_errors", "Exceptions raised by user callbacks (caught)."),
)
_NAMES = {
    "visitors": "received_visitors",
    "enqueued": "enqueued_visitors",
    "attempts": "requests",
    "retried": "retried_requests",
    "delivered": "delivered_visitors",
    "batches_sent": "delivered_batches",
    "bytes_sent": "sent_bytes",
}
_GAUGES = (
    ("queue_depth", "queue_depth", "Visitors waiting to be sent."),
    ("in_flight", "in_flight_requests", "Requests being sent now."),
    ("circuits_open", "circuits_open", "Endpoints whose circuit breaker holds sends back."),
    ("spool_depth", "spool_depth", "Visitors in the spool (waiting, leased or retrying)."),
)


class _HasStats(Protocol):
    def stats(self) -> DispatchStats: ...


class DispatcherMetrics(Collector):
    """A Prometheus collector over any number of dispatchers (see :func:`register`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dispatchers: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()

    def add(self, dispatcher: _HasStats, name: str | None = None) -> str:
        """Scrape ``dispatcher`` too, labelled ``name`` (default: class name, numbered)."""
        if not callable(getattr(dispatcher, "stats", None)):
            raise ConfigError(
                f"register({dispatcher!r}): expected an xpevents dispatcher (something with "
                "stats()): BatchDispatcher, AsyncDispatcher or DefaultEventDispatcher"
            )
        with self._lock:
            label = name or self._free_label(type(dispatcher).__name__)
            if label in self._dispatchers:
                raise ConfigError(f"register(name={label!r}): that name is already registered")
            self._dispatchers[label] = dispatcher
            return label

    def _free_label(self, base: str) -> str:
        if base not in self._dispatchers:
            return base
        n = 2
        while f"{base}-{n}" in self._dispatchers:
            n += 1
        return f"{base}-{n}"

    def describe(self) -> list[Metric]:
        """No fixed description: the families depend on the dispatchers registered."""
        return []

    def collect(self) -> Iterator[Metric]:
        """One family per statistic, a sample per dispatcher."""
        with self._lock:
            snapshots = {label: d.stats() for label, d in list(self._dispatchers.items())}
        info = GaugeMetricFamily(
            "xpevents_build_info", "xpevents version (always 1).", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info
        yield from _counters(snapshots)
        yield from _gauges(snapshots)


def _counters(snapshots: Mapping[str, DispatchStats]) -> Iterator[Metric]:
    for field, help_text in _COUNTERS:
        family = CounterMetricFamily(
            f"{PREFIX}_{_NAMES.get(field, field)}", help_text, labels=["dispatcher"]
        )
        for label, stats in snapshots.items():
            family.add_metric([label], getattr(stats, field))
        yield family
    for field, help_text in (
        ("failed", "Visitors given up on, by reason."),
        ("dropped", "Visitors discarded without a delivery attempt, by reason."),
    ):
        family = CounterMetricFamily(
            f"{PREFIX}_{field}_visitors", help_text, labels=["dispatcher", "reason"]
        )
        for label, stats in snapshots.items():
            for reason, count in getattr(stats, field).items():
                family.add_metric([label, reason], count)
        yield family


def _gauges(snapshots: Mapping[str, DispatchStats]) -> Iterator[Metric]:
    for field, name, help_text in _GAUGES:
        family = GaugeMetricFamily(f"{PREFIX}_{name}", help_text, labels=["dispatcher"])
        for label, stats in snapshots.items():
            family.add_metric([label], getattr(stats, field))
        yield family
    dead = GaugeMetricFamily(
        f"{PREFIX}_dead_letters",
        "Visitors in dead letters, by reason.",
        labels=["dispatcher", "reason"],
    )
    age = GaugeMetricFamily(
        f"{PREFIX}_spool_oldest_age_seconds",
        "Age of the oldest spooled visitor.",
        labels=["dispatcher"],
    )
    success = GaugeMetricFamily(
        f"{PREFIX}_last_success_timestamp_seconds", "Time of the last 2xx.", labels=["dispatcher"]
    )
    durable = GaugeMetricFamily(
        f"{PREFIX}_durable", "1 when accepted visitors survive a crash.", labels=["dispatcher"]
    )
    for label, stats in snapshots.items():
        for reason, count in stats.dead_letters.items():
            dead.add_metric([label, reason], count)
        if stats.spool_oldest_age is not None:
            age.add_metric([label], stats.spool_oldest_age)
        if stats.last_success_at is not None:
            success.add_metric([label], stats.last_success_at)
        durable.add_metric([label], 1 if stats.durable else 0)
    yield from (dead, age, success, durable)


_default: weakref.WeakKeyDictionary[CollectorRegistry, DispatcherMetrics] = (
    weakref.WeakKeyDictionary()
)
_default_lock = threading.Lock()


def register(
    *dispatchers: _HasStats,
    name: str | None = None,
    registry: CollectorRegistry = REGISTRY,
) -> DispatcherMetrics:
    """Expose ``dispatchers``' stats in ``registry`` (default prometheus_client's REGISTRY).

    Args:
        *dispatchers: xpevents dispatchers (anything with ``stats()``).
        name: the ``dispatcher`` label (only with one dispatcher). Default: the class
            name, numbered when taken (``BatchDispatcher``, ``BatchDispatcher-2``).
        registry: where to register. One collector per registry serves every call.

    Returns:
        The collector (``.add(d, name)`` registers more later).

    Raises:
        ConfigError: not a dispatcher, a name given with several dispatchers, or a name
            already registered.
    """
    if name is not None and len(dispatchers) != 1:
        raise ConfigError("register(name=...): a name labels exactly one dispatcher")
    with _default_lock:
        collector = _default.get(registry)
        if collector is None:
            collector = DispatcherMetrics()
            registry.register(collector)
            _default[registry] = collector
    for dispatcher in dispatchers:
        collector.add(dispatcher, name)
    return collector
