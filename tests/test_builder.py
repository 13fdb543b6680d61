"""EventBuilder: payload shape, official filtering and normalisation rules, speed."""

from __future__ import annotations

import copy
import enum
import json
import math
import time
from typing import Any

import pytest

from xpevents.decide.datafile import load_config
from xpevents.events.builder import (
    EventBuilder,
    get_numeric_value,
    get_revenue_value,
    normalize_campaign_id,
    normalize_variation_id,
)
from xpevents.events.model import EVENTS_URL, EVENTS_URL_EU, LogEvent


@pytest.fixture(scope="module")
def datafile(datafile_text: str) -> dict[str, Any]:
    return dict(json.loads(datafile_text))


@pytest.fixture(scope="module")
def builder(datafile: dict[str, Any]) -> EventBuilder:
    return EventBuilder(load_config(datafile), client_name="test", client_version="9")


def _experiment(builder_config: Any, key: str) -> Any:
    return builder_config.experiments[key]


def test_impression_shape_and_key_order(datafile: dict[str, Any]) -> None:
    config = load_config(datafile)
    builder = EventBuilder(config, client_name="test", client_version="9")
    experiment = next(iter(config.experiments.values()))
    variation = experiment.variations[0]
    event = builder.impression(experiment, variation, "u1", {"nope": 1})
    assert isinstance(event, LogEvent)
    assert event.url == EVENTS_URL
    assert event.http_verb == "POST"
    assert event.headers == {"Content-Type": "application/json"}
    body = event.params
    assert list(body) == [
        "account_id",
        "project_id",
        "revision",
        "client_name",
        "client_version",
        "anonymize_ip",
        "enrich_decisions",
        "visitors",
    ]
    assert body["client_name"] == "test" and body["enrich_decisions"] is True
    visitor = body["visitors"][0]
    assert list(visitor) == ["snapshots", "attributes", "visitor_id"]
    snapshot = visitor["snapshots"][0]
    assert list(snapshot) == ["events", "decisions"]
    assert list(snapshot["events"][0]) == ["entity_id", "uuid", "key", "timestamp"]
    assert snapshot["events"][0]["key"] == "campaign_activated"
    decision = snapshot["decisions"][0]
    assert list(decision) == ["campaign_id", "experiment_id", "variation_id", "metadata"]
    assert decision["metadata"] == {
        "flag_key": "",
        "rule_key": "",
        "rule_type": "experiment",
        "variation_key": variation.key,
        "enabled": True,
    }
    assert abs(snapshot["events"][0]["timestamp"] - time.time() * 1000) < 60_000
    json.dumps(body)  # serialisable as is


def test_conversion_shape_and_tags(builder: EventBuilder, datafile: dict[str, Any]) -> None:
    config = load_config(datafile)
    event_def = next(iter(config.events.values()))
    tags = {"revenue": 4200, "value": "2.5", "category": "shoes", "decisions": None}
    event = builder.conversion(event_def, "u1", None, tags)
    snapshot = event.params["visitors"][0]["snapshots"][0]
    assert list(snapshot) == ["events"]
    assert snapshot["events"][0] == {
        "entity_id": event_def.id,
        "uuid": snapshot["events"][0]["uuid"],
        "key": event_def.key,
        "timestamp": snapshot["events"][0]["timestamp"],
        "revenue": 4200,
        "value": 2.5,
        "tags": {"revenue": 4200, "value": "2.5", "category": "shoes"},
    }
    assert tags["decisions"] is None  # the caller's dict is not modified
    no_tags = builder.conversion(event_def, "u1").params["visitors"][0]["snapshots"][0]
    assert list(no_tags["events"][0]) == ["entity_id", "uuid", "key", "timestamp"]


def test_nested_tags_follow_the_json_round_trip(builder: EventBuilder, datafile: Any) -> None:
    event_def = next(iter(load_config(datafile).events.values()))
    tags = {1: (1, 2), "nested": {"value": None, "keep": None}}
    sent = builder.conversion(event_def, "u", None, tags).params["visitors"][0]["snapshots"][0]
    assert sent["events"][0]["tags"] == {"1": [1, 2], "nested": {"keep": None}}


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("FR", True),
        (True, True),
        (3, True),
        (2.5, True),
        (2**53, True),
        (2**53 + 1, False),
        (-(2**53) - 1, False),
        (math.nan, False),
        (math.inf, False),
        (None, False),
        ([1], False),
        ({"a": 1}, False),
    ],
)
def test_attribute_values(value: Any, kept: bool, datafile: dict[str, Any]) -> None:
    config = load_config(datafile)
    key = next(iter(config.attributes))
    attrs = EventBuilder(config).visitor_attributes({key: value})
    custom = [a for a in attrs if a["key"] == key]
    assert bool(custom) == kept
    if kept:
        assert custom[0] == {
            "entity_id": config.attributes[key].id,
            "key": key,
            "type": "custom",
            "value": value,
        }


def test_attribute_subclasses_are_sent_as_their_base_type(datafile: dict[str, Any]) -> None:
    class Key(str):
        pass

    class Plan(enum.StrEnum):
        PRO = "pro"

    class Level(enum.IntEnum):
        HIGH = 3
        HUGE = 2**60

    class Ratio(float):
        pass

    config = load_config(datafile)
    first, second, third, fourth = list(config.attributes)[:4]
    attrs = EventBuilder(config).visitor_attributes(
        {
            Key(first): Plan.PRO,
            second: Level.HIGH,
            third: Ratio(0.5),
            fourth: Level.HUGE,
            "$opt_nan": Ratio("nan"),
            Key("$opt_ok"): True,
        }
    )
    sent = [(a["key"], a["value"]) for a in attrs if a["key"] != "$opt_bot_filtering"]
    assert sent == [(first, "pro"), (second, 3), (third, 0.5), ("$opt_ok", True)]
    assert [(type(k), type(v)) for k, v in sent] == [
        (str, str),
        (str, int),
        (str, float),
        (str, bool),
    ]


def test_unknown_and_reserved_attributes_and_bot_filtering(datafile: dict[str, Any]) -> None:
    df = copy.deepcopy(datafile)
    df["botFiltering"] = False
    attrs = EventBuilder(load_config(df)).visitor_attributes(
        {"not_in_datafile": "x", "$opt_user_agent": "bot", 7: "x"}
    )
    assert attrs == [
        {
            "entity_id": "$opt_user_agent",
            "key": "$opt_user_agent",
            "type": "custom",
            "value": "bot",
        },
        {
            "entity_id": "$opt_bot_filtering",
            "key": "$opt_bot_filtering",
            "type": "custom",
            "value": False,
        },
    ]
    df.pop("botFiltering")
    assert EventBuilder(load_config(df)).visitor_attributes(None) == []


def test_region_and_endpoint(datafile: dict[str, Any]) -> None:
    df = copy.deepcopy(datafile)
    df["region"] = "EU"
    assert EventBuilder(load_config(df)).url == EVENTS_URL_EU
    assert EventBuilder(load_config(df), endpoint="http://127.0.0.1:1/e").url == (
        "http://127.0.0.1:1/e"
    )


def test_id_normalisation() -> None:
    assert normalize_campaign_id("layer", "exp") == "layer"
    assert normalize_campaign_id("", "exp") == "exp"
    assert normalize_campaign_id(None, "") == ""
    assert normalize_variation_id("0123") == "0123"
    assert normalize_variation_id("var_1") is None
    assert normalize_variation_id("") is None
    assert normalize_variation_id("\uff11\uff12") is None  # fullwidth digits


def test_empty_layer_and_opaque_variation_ids(datafile: dict[str, Any]) -> None:
    df = copy.deepcopy(datafile)
    experiment = df["experiments"][0]
    experiment["layerId"] = ""
    experiment["variations"][0]["id"] = "opaque_id"
    experiment["trafficAllocation"][0]["entityId"] = "opaque_id"
    config = load_config(df)
    exp = config.experiments[experiment["key"]]
    event = EventBuilder(config).impression(exp, exp.variations_by_id["opaque_id"], "u")
    snapshot = event.params["visitors"][0]["snapshots"][0]
    assert snapshot["decisions"][0]["campaign_id"] == exp.id
    assert snapshot["events"][0]["entity_id"] == exp.id
    assert snapshot["decisions"][0]["variation_id"] is None
    assert (
        snapshot["decisions"][0]["metadata"]["variation_key"] == experiment["variations"][0]["key"]
    )


def test_no_experiment_impression(builder: EventBuilder) -> None:
    event = builder.impression(
        None, None, "u", None, flag_key="f", rule_type="rollout", enabled=False
    )
    decision = event.params["visitors"][0]["snapshots"][0]["decisions"][0]
    assert decision == {
        "campaign_id": "",
        "experiment_id": "",
        "variation_id": None,
        "metadata": {
            "flag_key": "f",
            "rule_key": "",
            "rule_type": "rollout",
            "variation_key": "",
            "enabled": False,
        },
    }


@pytest.mark.parametrize(
    ("tags", "revenue", "value"),
    [
        ({"revenue": 10}, 10, None),
        ({"revenue": True}, None, None),
        ({"revenue": 1.5}, None, None),
        ({"revenue": "10"}, None, None),
        ({"value": 3}, None, 3.0),
        ({"value": "1.5"}, None, 1.5),
        ({"value": "1,234"}, None, None),
        ({"value": math.nan}, None, None),
        ({"value": math.inf}, None, None),
        ({"value": False}, None, None),
        ({"value": [1]}, None, None),
        (None, None, None),
    ],
)
def test_revenue_and_value_rules(tags: Any, revenue: Any, value: Any) -> None:
    from optimizely.helpers import event_tag_utils

    assert get_revenue_value(tags) == revenue == event_tag_utils.get_revenue_value(tags)
    assert get_numeric_value(tags) == value == event_tag_utils.get_numeric_value(tags)


def test_payloads_share_no_containers(builder: EventBuilder, datafile: Any) -> None:
    config = load_config(datafile)
    experiment = next(iter(config.experiments.values()))
    a = builder.impression(experiment, experiment.variations[0], "u", {})
    b = builder.impression(experiment, experiment.variations[0], "u", {})
    a.params["visitors"][0]["snapshots"][0]["decisions"][0]["metadata"]["enabled"] = "changed"
    assert b.params["visitors"][0]["snapshots"][0]["decisions"][0]["metadata"]["enabled"] is True
    assert (
        a.params["visitors"][0]["snapshots"][0]["events"][0]["uuid"]
        != (b.params["visitors"][0]["snapshots"][0]["events"][0]["uuid"])
    )


def test_build_is_fast(builder: EventBuilder, datafile: Any) -> None:
    config = load_config(datafile)
    experiment = next(iter(config.experiments.values()))
    variation = experiment.variations[0]
    attrs = {key: "x" for key in list(config.attributes)[:3]}
    n = 20_000
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            builder.impression(experiment, variation, "user", attrs)
        best = min(best, (time.perf_counter() - start) / n)
    assert best < 40e-6, f"{best * 1e6:.1f} µs per impression"  # ~3 µs here; lax for CI noise
