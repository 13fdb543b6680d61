"""Every payload shape the official optimizely-sdk sends decodes and is accepted.

The shapes are generated, not written by hand: the official SDK runs against the
fixture datafile with a dispatcher that records ``event.url`` and ``event.params``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from optimizely import optimizely
from optimizely.decision.optimizely_decide_option import OptimizelyDecideOption
from optimizely.event.event_factory import EventFactory
from optimizely.event.event_processor import ForwardingEventProcessor
from optimizely.event.user_event_factory import UserEventFactory

from xpevents.collector import Collector, CollectorServer
from xpevents.serving.schema import ACTIVATE_EVENT_KEY, Payload, decode_payload, encode_payload
from xpevents.testing import CollectorHandle

ATTRIBUTES = {"country": "US", "age": 30, "is_premium": True, "app_version": 1.5}


class _Recorder:
    """An event dispatcher for the official SDK that only records what it is given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def dispatch_event(self, event: Any) -> None:
        self.events.append((event.url, event.params))


def _client(datafile: dict[str, Any], recorder: _Recorder) -> Any:
    return optimizely.Optimizely(
        json.dumps(datafile),
        event_dispatcher=recorder,
        event_processor=ForwardingEventProcessor(recorder),
    )


def sdk_shapes(datafile_text: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Named (url, params) pairs covering what the official SDK sends."""
    shapes: dict[str, tuple[str, dict[str, Any]]] = {}

    def record(name: str, recorder: _Recorder) -> None:
        assert recorder.events, f"the SDK sent nothing for {name}"
        for i, event in enumerate(recorder.events):
            shapes[f"{name}-{i}"] = event
        recorder.events.clear()

    base = json.loads(datafile_text)
    for send_flag_decisions in (True, False):
        datafile = dict(base, sendFlagDecisions=send_flag_decisions)
        rec = _Recorder()
        sdk = _client(datafile, rec)
        tag = f"sfd={send_flag_decisions}"
        assert sdk.activate("checkout_button_color", "user-1", ATTRIBUTES) is not None
        record(f"activate[{tag}]", rec)
        assert sdk.activate("homepage_hero_copy", "user-2") is not None
        record(f"activate-no-attributes[{tag}]", rec)
        sdk.track("purchase", "user-1", ATTRIBUTES)
        record(f"track-no-tags[{tag}]", rec)
        sdk.track("purchase", "user-1", None, {"revenue": 4200, "value": 3.5, "currency": "EUR"})
        record(f"track-revenue-value[{tag}]", rec)
        sdk.track("add_to_cart", "user-3", {"country": "FR"}, {"value": 2, "sku": "A-1"})
        record(f"track-value-int[{tag}]", rec)
        sdk.track("signup", "user-3", None, {"plan": "pro", "nested": {"a": [1, 2]}})
        record(f"track-tags-only[{tag}]", rec)
        user = sdk.create_user_context("user-4", {"country": "DE", "age": 41})
        for flag in ("new_checkout", "dark_mode", "gift_wrap"):
            user.decide(flag)
        user.decide_all([OptimizelyDecideOption.INCLUDE_REASONS])
        if rec.events:  # with sendFlagDecisions=False rollouts send nothing
            record(f"decide[{tag}]", rec)
        sdk.close()

    # EU projects send to eu.logx.optimizely.com.
    rec = _Recorder()
    sdk = _client(dict(base, region="EU"), rec)
    sdk.activate("pricing_page_layout", "user-5", {"country": "IE"})
    sdk.track("purchase", "user-5", None, {"revenue": 99})
    record("eu", rec)
    sdk.close()

    # A flag decision with no variation (variation_id null) and a batched payload
    # of several visitors, built with the SDK's own factories.
    config = _client(base, _Recorder()).config_manager.get_config()
    no_variation = UserEventFactory.create_impression_event(
        config, None, None, "dark_mode", "", "rollout", False, "user-6", None, None
    )
    conversion = UserEventFactory.create_conversion_event(
        config, "purchase", "user-7", {"country": "US"}, {"revenue": 10, "value": 1.25}
    )
    log_event = EventFactory.create_log_event([no_variation], logging.getLogger("sdk"))
    shapes["null-variation"] = (log_event.url, log_event.params)
    batch = EventFactory.create_log_event([no_variation, conversion], logging.getLogger("sdk"))
    shapes["batch"] = (batch.url, batch.params)
    return shapes


def collector_path(url: str) -> str:
    """The collector path that stands for an SDK event URL."""
    parts = urlsplit(url)
    return ("/eu" if parts.hostname and parts.hostname.startswith("eu.") else "") + parts.path


@pytest.fixture(scope="module")
def shapes(datafile_text: str) -> dict[str, tuple[str, dict[str, Any]]]:
    return sdk_shapes(datafile_text)


@pytest.fixture(scope="module")
def handle() -> Iterator[CollectorHandle]:
    collector = Collector()
    with CollectorServer(collector, port=0) as server:
        h = CollectorHandle(server.url, os.getpid())
        yield h
        h.close()
    collector.close()


def test_the_generated_shapes_cover_what_the_sdk_sends(shapes: dict[str, Any]) -> None:
    visitors = [v for _, params in shapes.values() for v in params["visitors"]]
    snapshots = [s for v in visitors for s in v["snapshots"]]
    events = [e for s in snapshots for e in s["events"]]
    decisions = [d for s in snapshots for d in s.get("decisions", [])]
    assert any("decisions" not in s for s in snapshots)  # conversions
    assert any(d["variation_id"] is None for d in decisions)
    assert {d["metadata"]["rule_type"] for d in decisions} >= {"experiment", "rollout"}
    assert any("revenue" in e and "value" in e and "tags" in e for e in events)
    assert any("tags" in e and "revenue" not in e for e in events)
    assert any(isinstance(a["value"], bool) for v in visitors for a in v["attributes"])
    assert any(isinstance(a["value"], float) for v in visitors for a in v["attributes"])
    assert any(len(params["visitors"]) > 1 for _, params in shapes.values())
    assert any(url.startswith("https://eu.") for url, _ in shapes.values())


def test_every_sdk_shape_decodes_and_reencodes_to_the_same_json(
    shapes: dict[str, tuple[str, dict[str, Any]]],
) -> None:
    for name, (_, params) in shapes.items():
        payload = decode_payload(json.dumps(params).encode())
        assert isinstance(payload, Payload), name
        assert json.loads(encode_payload(payload)) == params, name


def test_every_sdk_shape_is_accepted_and_stored_verbatim(
    shapes: dict[str, tuple[str, dict[str, Any]]], handle: CollectorHandle
) -> None:
    handle.reset()
    expected_events = 0
    with httpx.Client(base_url=handle.base_url, trust_env=False) as http:
        for name, (url, params) in shapes.items():
            response = http.post(
                collector_path(url),
                content=json.dumps(params),
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == 204, (name, response.text)
            expected_events += sum(
                len(s["events"]) for v in params["visitors"] for s in v["snapshots"]
            )
    stats = handle.stats()
    assert stats["requests_by_status"] == {"204": len(shapes)}
    assert stats["invalid_payloads"] == 0
    assert stats["events"] == expected_events
    assert stats["requests_by_region"]["eu"] >= 2
    # "null-variation" and "batch" share one impression: the second is a duplicate.
    assert stats["duplicates"] == 1
    assert stats["unique_events"] == expected_events - 1

    stored = handle.events(limit=10_000)
    assert len(stored) == stats["unique_events"]
    sent_visitors = [v for _, params in shapes.values() for v in params["visitors"]]
    stored_visitors = {json.dumps(e["visitor"], sort_keys=True) for e in stored}
    for visitor in sent_visitors:
        assert json.dumps(visitor, sort_keys=True) in stored_visitors
    by_uuid = {e["uuid"]: e for e in stored}
    for _, params in shapes.values():
        for visitor in params["visitors"]:
            for snapshot in visitor["snapshots"]:
                for event in snapshot["events"]:
                    row = by_uuid[event["uuid"]]
                    assert row["visitor_id"] == visitor["visitor_id"]
                    assert row["attributes"] == visitor["attributes"]
                    assert row["key"] == event["key"]
                    assert row["revenue"] == event.get("revenue")
                    assert row["tags"] == event.get("tags")
                    if event["key"] == ACTIVATE_EVENT_KEY:
                        decision = snapshot["decisions"][0]
                        assert row["experiment_id"] == decision["experiment_id"]
                        assert row["variation_id"] == decision["variation_id"]
                        assert row["metadata"] == decision["metadata"]
                    else:
                        assert row["experiment_id"] is None
    assert stats["revenue"]["purchase"] == 4200 * 2 + 99 + 10
