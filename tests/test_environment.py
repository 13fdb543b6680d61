"""XPEVENTS_ENDPOINT and XPEVENTS_DISABLED: dev and CI never reach production."""

from __future__ import annotations

import pytest

from xpevents import (
    AsyncDispatcher,
    BatchDispatcher,
    Client,
    ConfigError,
    DefaultEventDispatcher,
)
from xpevents.example import example_datafile
from xpevents.testing import CollectorHandle


def test_the_endpoint_variable_redirects_every_dispatcher_without_an_endpoint(
    collector: CollectorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XPEVENTS_ENDPOINT", collector.base_url)
    with Client(example_datafile()) as client:  # the client's own BatchDispatcher
        client.track("purchase", "u1")
    sync = DefaultEventDispatcher()
    with Client(example_datafile(), event_dispatcher=sync) as client:
        client.track("purchase", "u2")
    assert collector.wait_for(unique_events=2, timeout=10)["unique_events"] == 2
    assert sync.endpoint == collector.base_url
    explicit = BatchDispatcher(endpoint="http://127.0.0.1:9/v1/events")
    assert explicit.endpoint == "http://127.0.0.1:9/v1/events"  # an argument wins
    explicit.close(0)


@pytest.mark.parametrize("value", ["not a url", "ftp://x", "http://127.0.0.1:99999"])
def test_a_bad_endpoint_variable_is_refused_at_construction(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("XPEVENTS_ENDPOINT", value)
    for make in (BatchDispatcher, AsyncDispatcher, DefaultEventDispatcher):
        with pytest.raises(ConfigError, match="XPEVENTS_ENDPOINT="):
            make()


def test_disabled_accepts_counts_and_sends_nothing(
    collector: CollectorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XPEVENTS_DISABLED", "1")
    batch = BatchDispatcher(endpoint=collector.base_url)
    sync = DefaultEventDispatcher(endpoint=collector.base_url)
    for dispatcher in (batch, sync):
        with Client(example_datafile(), event_dispatcher=dispatcher) as client:
            client.activate("checkout_button_color", "u1")
            client.track("purchase", "u1")
        stats = dispatcher.stats()
        assert stats.dropped == {"disabled": 2} and stats.delivered == 0
    batch.close(1)
    assert collector.stats()["requests"] == 0


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_a_bad_disabled_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("XPEVENTS_DISABLED", value)
    with pytest.raises(ConfigError, match="XPEVENTS_DISABLED="):
        DefaultEventDispatcher()


@pytest.mark.parametrize("value", ["0", "false", "off", ""])
def test_off_values_send_normally(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("XPEVENTS_DISABLED", value)
    DefaultEventDispatcher().close()


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("http://127.0.0.1:87888", "port must be a number"),
        (" http://127.0.0.1:8788", "has no spaces"),
        ("http://127.0.0.1:8788/v1/events ", "has no spaces"),
    ],
)
def test_endpoint_mistakes_fail_at_construction(endpoint: str, message: str) -> None:
    for make in (BatchDispatcher, AsyncDispatcher, DefaultEventDispatcher):
        with pytest.raises(ConfigError, match=message):
            make(endpoint=endpoint)
