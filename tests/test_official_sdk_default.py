"""The synchronous dispatcher is a drop-in for the official optimizely-sdk."""

from __future__ import annotations

import logging

from xpevents import DefaultEventDispatcher
from xpevents.testing import CollectorHandle


def test_official_sdk_delivers_through_default_dispatcher(
    collector: CollectorHandle, datafile_text: str
) -> None:
    from optimizely import optimizely

    logging.getLogger("optimizely").setLevel(logging.ERROR)
    dispatcher = DefaultEventDispatcher(endpoint=collector.base_url)
    sdk = optimizely.Optimizely(datafile_text, event_dispatcher=dispatcher)
    try:
        shown = 0
        for i in range(100):
            if sdk.activate("checkout_button_color", f"user-{i}") is not None:
                shown += 1
            sdk.track("purchase", f"user-{i}", event_tags={"revenue": 1299, "value": 2.5})
        assert shown == 100  # 100% traffic, no audience
        stats = collector.wait_for(unique_events=200, timeout=30)
        assert stats["duplicates"] == 0
        assert dispatcher.stats().delivered == 200
        assert dispatcher.stats().failed == {}
        stored = collector.events(limit=1000)
        keys = {e["key"] for e in stored}
        assert keys == {"campaign_activated", "purchase"}
    finally:
        sdk.close()
        dispatcher.close()


def test_official_sdk_retry_does_not_fire_for_post_but_ours_does(
    collector_factory: object, datafile_text: str
) -> None:
    from optimizely import optimizely

    from xpevents import RetryPolicy

    flaky = collector_factory(fail_rate=0.5, seed=7)  # type: ignore[operator]
    dispatcher = DefaultEventDispatcher(
        endpoint=flaky.base_url, retry=RetryPolicy(max_attempts=10, backoff_base=0.001)
    )
    sdk = optimizely.Optimizely(datafile_text, event_dispatcher=dispatcher)
    try:
        for i in range(50):
            sdk.activate("homepage_hero_copy", f"user-{i}")
        stats = flaky.wait_for(unique_events=50, timeout=30)
        assert stats["unique_events"] == 50
        assert dispatcher.stats().retried > 0
        assert dispatcher.stats().failed == {}
    finally:
        sdk.close()
        dispatcher.close()
