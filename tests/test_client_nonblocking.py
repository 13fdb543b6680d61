"""Client(datafile) owns a BatchDispatcher: activate/track/decide never wait on the network."""

from __future__ import annotations

import time

from xpevents import BatchDispatcher, Client
from xpevents.testing import run_collector


def test_client_without_dispatcher_owns_a_batch_dispatcher(datafile_text: str) -> None:
    with Client(datafile_text, event_endpoint="http://127.0.0.1:9/v1/events") as client:
        assert isinstance(client.event_dispatcher, BatchDispatcher)


def test_calls_do_not_wait_on_a_slow_endpoint(datafile_text: str) -> None:
    with run_collector(latency_ms=500) as collector:
        client = Client(datafile_text, event_endpoint=collector.events_url)
        slowest = 0.0
        for i in range(300):
            started = time.perf_counter()
            client.activate("checkout_button_color", f"user-{i}")
            client.track("purchase", f"user-{i}", event_tags={"revenue": 100})
            client.decide(f"user-{i}", "new_checkout")
            slowest = max(slowest, time.perf_counter() - started)
        # The endpoint takes 500 ms per request; a call that waited on it would show it.
        assert slowest < 0.25
        dispatched = client.event_dispatcher.stats().visitors  # type: ignore[attr-defined]
        client.close(timeout=30)
        stats = collector.wait_for(unique_events=dispatched, timeout=30)
        assert stats["unique_events"] == dispatched >= 600
