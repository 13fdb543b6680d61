"""BatchDispatcher as the official optimizely-sdk's event_dispatcher, unchanged."""

from __future__ import annotations

import logging
from typing import Any

from xpevents.dispatch.batch import BatchDispatcher
from xpevents.testing import CollectorHandle


def test_official_sdk_forwarding_processor_delivers_every_event(
    collector: CollectorHandle, datafile_text: str
) -> None:
    from optimizely import optimizely
    from optimizely.event.event_processor import ForwardingEventProcessor

    logging.getLogger("optimizely").setLevel(logging.ERROR)
    dispatcher = BatchDispatcher(endpoint=collector.base_url, max_queue_events=20_000)
    handed: list[int] = []

    class Counting:
        def dispatch_event(self, event: Any) -> None:
            handed.append(len(event.params["visitors"]))
            dispatcher.dispatch_event(event)

    processor = ForwardingEventProcessor(Counting())
    sdk = optimizely.Optimizely(
        datafile_text, event_dispatcher=Counting(), event_processor=processor
    )
    try:
        shown = sum(
            sdk.activate("checkout_button_color", f"user-{i}") is not None for i in range(10_000)
        )
        assert shown == 10_000  # 100% traffic, no audience: every user buckets
        outcome = dispatcher.flush(30)
        assert outcome.pending == 0
        assert sum(handed) == 10_000
        stats = collector.wait_for(unique_events=10_000, timeout=30)
        assert stats["unique_events"] == 10_000
        assert stats["duplicates"] == 0
        assert dispatcher.stats().delivered == 10_000
        assert dispatcher.stats().batches_sent < 200
    finally:
        sdk.close()
        dispatcher.close()


def test_official_sdk_default_wiring_with_batch_dispatcher(
    collector: CollectorHandle, datafile_text: str
) -> None:
    from optimizely import optimizely

    logging.getLogger("optimizely").setLevel(logging.ERROR)
    dispatcher = BatchDispatcher(endpoint=collector.base_url)
    sdk = optimizely.Optimizely(datafile_text, event_dispatcher=dispatcher)
    try:
        for i in range(200):
            sdk.activate("homepage_hero_copy", f"user-{i}")
            sdk.track("purchase", f"user-{i}", event_tags={"revenue": 1299})
        sdk.close()  # the SDK's own processor flushes into our queue
        assert dispatcher.flush(20).pending == 0
        assert collector.wait_for(unique_events=400, timeout=20)["duplicates"] == 0
    finally:
        dispatcher.close()
