"""RecordingDispatcher: what an application would have sent, for users' unit tests."""

from __future__ import annotations

import pytest
from optimizely import optimizely

from xpevents import Client, ConfigError
from xpevents.example import example_datafile
from xpevents.testing import RecordingDispatcher


def test_records_impressions_and_conversions_of_the_client() -> None:
    recorder = RecordingDispatcher()
    with Client(example_datafile(), event_dispatcher=recorder) as client:
        variation = client.activate("checkout_button_color", "user-42", {"country": "US"})
        client.track("purchase", "user-42", event_tags={"revenue": 1299})
    assert variation is not None
    (impression,) = recorder.assert_impression(
        experiment_key="checkout_button_color", user_id="user-42", count=1
    )
    assert impression.variation_key == variation
    assert impression.attributes["country"] == "US"
    (conversion,) = recorder.assert_conversion("purchase", user_id="user-42", revenue=1299)
    assert conversion.tags == {"revenue": 1299}
    recorder.assert_impression(experiment_key="homepage_hero_copy", count=0)


def test_failed_assertions_say_what_was_recorded() -> None:
    recorder = RecordingDispatcher()
    client = Client(example_datafile(), event_dispatcher=recorder)
    client.track("purchase", "u1", event_tags={"revenue": 5})
    with pytest.raises(AssertionError, match=r"found 0; recorded 1:\n.*'purchase'"):
        recorder.assert_conversion("purchase", revenue=6)
    with pytest.raises(AssertionError, match="recorded 0"):
        recorder.assert_impression()
    with pytest.raises(AssertionError, match="expected no events, recorded 1"):
        recorder.assert_nothing_sent()
    recorder.clear()
    recorder.assert_nothing_sent()


def test_works_under_the_official_sdk_and_keeps_events_unmodified() -> None:
    recorder = RecordingDispatcher()
    sdk = optimizely.Optimizely(example_datafile(), event_dispatcher=recorder)
    sdk.activate("checkout_button_color", "u9")
    sdk.close()
    (event,) = recorder.events
    before = repr(event.params)
    recorder.assert_impression(experiment_key="checkout_button_color", user_id="u9")
    assert repr(event.params) == before  # the readers never alter a payload
    assert recorder.flush() is True and recorder.close() is None


def test_refuses_what_is_not_an_event() -> None:
    with pytest.raises(ConfigError, match="has no 'url'"):
        RecordingDispatcher().dispatch_event(object())  # type: ignore[arg-type]
