"""xpevents.metrics: dispatcher stats scraped over HTTP by prometheus_client's own parser."""

from __future__ import annotations

import gc

import httpx
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from xpevents import BatchDispatcher, Client, ConfigError, DefaultEventDispatcher, __version__
from xpevents.example import example_datafile
from xpevents.metrics import register
from xpevents.testing import CollectorHandle


def _scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        text = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics", trust_env=False).text
    finally:
        server.shutdown()
        thread.join(5)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counts_what_was_delivered_and_dropped(collector: CollectorHandle) -> None:
    registry = CollectorRegistry()
    dispatcher = BatchDispatcher(endpoint=collector.events_url, max_queue_events=1000)
    register(dispatcher, name="web", registry=registry)
    with Client(example_datafile(), event_dispatcher=dispatcher) as client:
        for i in range(20):
            client.track("purchase", f"u{i}")
    dispatcher.flush(10)
    samples = _scrape(registry)
    web = (("dispatcher", "web"),)
    assert samples[("xpevents_dispatch_delivered_visitors_total", web)] == 20
    assert samples[("xpevents_dispatch_calls_total", web)] == 20
    assert samples[("xpevents_dispatch_queue_depth", web)] == 0
    assert samples[("xpevents_dispatch_durable", web)] == 0
    assert samples[("xpevents_build_info", (("version", __version__),))] == 1
    assert not [name for name, _ in samples if name.endswith("_created")]
    dispatcher.close(5)
    dispatcher.dispatch_event(_event())
    dropped = _scrape(registry)
    assert dropped[("xpevents_dispatch_dropped_visitors_total", (*web, ("reason", "closed")))] == 1


def _event() -> object:
    from xpevents import LogEvent

    visitor = {"visitor_id": "x", "attributes": [], "snapshots": [{"decisions": [], "events": []}]}
    return LogEvent("http://127.0.0.1:9/v1/events", {"account_id": "1", "visitors": [visitor]})


def test_several_dispatchers_are_told_apart_and_collected_ones_drop_out() -> None:
    registry = CollectorRegistry()
    first, second = DefaultEventDispatcher(), DefaultEventDispatcher()
    metrics = register(first, second, registry=registry)
    labels = {dict(k[1]).get("dispatcher") for k in _scrape(registry)}
    assert {"DefaultEventDispatcher", "DefaultEventDispatcher-2"} <= labels
    del second
    gc.collect()
    labels = {dict(k[1]).get("dispatcher") for k in _scrape(registry)}
    assert "DefaultEventDispatcher-2" not in labels
    assert register(registry=registry) is metrics  # one collector per registry
    first.close()


def test_register_validates_its_arguments() -> None:
    registry = CollectorRegistry()
    with pytest.raises(ConfigError, match="expected an xpevents dispatcher"):
        register(object(), registry=registry)  # type: ignore[arg-type]
    a, b = DefaultEventDispatcher(), DefaultEventDispatcher()
    with pytest.raises(ConfigError, match="exactly one dispatcher"):
        register(a, b, name="x", registry=registry)
    register(a, name="x", registry=registry)
    with pytest.raises(ConfigError, match="already registered"):
        register(b, name="x", registry=registry)
