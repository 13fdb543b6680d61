"""Decider: experiment and flag decisions, forced decisions, variables, speed."""

from __future__ import annotations

import timeit
from typing import Any

from xpevents.decide.datafile import load_config
from xpevents.decide.decider import Decider, cast_variable


def _exp(key: str, eid: str, **extra: Any) -> dict[str, Any]:
    exp: dict[str, Any] = {
        "id": eid,
        "key": key,
        "status": "Running",
        "layerId": "l" + eid,
        "audienceIds": [],
        "forcedVariations": {},
        "variations": [
            {
                "id": eid + "a",
                "key": key + "_a",
                "featureEnabled": True,
                "variables": [{"id": "size", "value": "7"}],
            },
            {"id": eid + "b", "key": key + "_b", "featureEnabled": False},
        ],
        "trafficAllocation": [
            {"entityId": eid + "a", "endOfRange": 5000},
            {"entityId": eid + "b", "endOfRange": 10000},
        ],
    }
    exp.update(extra)
    return exp


DATAFILE = {
    "version": "4",
    "accountId": "1",
    "projectId": "2",
    "revision": "3",
    "groups": [],
    "events": [],
    "audiences": [],
    "attributes": [],
    "typedAudiences": [
        {
            "id": "us",
            "name": "US",
            "conditions": [
                "or",
                {"name": "country", "type": "custom_attribute", "match": "exact", "value": "US"},
            ],
        }
    ],
    "experiments": [
        _exp("plain", "1"),
        _exp("paused", "2", status="Paused", forcedVariations={"vip": "paused_a"}),
        _exp("targeted", "3", audienceIds=["us"], forcedVariations={"vip": "targeted_b"}),
    ],
    "rollouts": [
        {
            "id": "r",
            "experiments": [
                _exp("rule_us", "4", audienceIds=["us"]),
                _exp("everyone", "5", trafficAllocation=[{"entityId": "5a", "endOfRange": 10000}]),
            ],
        }
    ],
    "featureFlags": [
        {
            "id": "f",
            "key": "flag",
            "experimentIds": ["3"],
            "rolloutId": "r",
            "variables": [{"id": "size", "key": "size", "type": "integer", "defaultValue": "1"}],
        }
    ],
}


def decider() -> Decider:
    return Decider(load_config(DATAFILE))


def test_not_running_wins_over_whitelist() -> None:
    d = decider()
    assert d.get_variation(d.config.experiments["paused"], "vip", {}) is None


def test_forced_then_whitelist_then_audience() -> None:
    d = decider()
    exp = d.config.experiments["targeted"]
    assert d.get_variation(exp, "someone", {}) is None  # audience not met
    whitelisted = d.get_variation(exp, "vip", {})
    assert whitelisted is not None and whitelisted.key == "targeted_b"
    forced = d.get_variation(exp, "vip", {}, forced_variation_key="targeted_a")
    assert forced is not None and forced.key == "targeted_a"
    ignored = d.get_variation(exp, "vip", {}, forced_variation_key="nope")
    assert ignored is not None and ignored.key == "targeted_b"


def test_reasons_are_collected() -> None:
    d = decider()
    reasons: list[str] = []
    d.get_variation(d.config.experiments["targeted"], "u", {}, reasons=reasons)
    assert any("does not meet conditions" in r for r in reasons)


def test_bucketing_id_changes_the_bucket() -> None:
    d = decider()
    exp = d.config.experiments["plain"]
    keys = {
        v.key
        for i in range(40)
        if (v := d.get_variation(exp, "same-user", {"$opt_bucketing_id": f"b{i}"})) is not None
    }
    assert keys == {"plain_a", "plain_b"}


def test_flag_falls_through_to_everyone_else() -> None:
    d = decider()
    flag = d.config.flags["flag"]
    decision = d.decide_flag(flag, "u1", {})
    assert decision.source == "rollout"
    assert decision.rule_key == "everyone"
    assert decision.enabled is True
    assert d.variables(flag, decision) == {"size": 7}


def test_flag_forced_decisions() -> None:
    d = decider()
    flag = d.config.flags["flag"]
    whole = d.decide_flag(flag, "u", {}, forced_decisions={("flag", None): "targeted_b"})
    assert (whole.rule_key, whole.variation_key, whole.enabled) == (None, "targeted_b", False)
    assert d.variables(flag, whole) == {"size": 1}  # disabled: default value
    rule = d.decide_flag(flag, "u", {}, forced_decisions={("flag", "rule_us"): "everyone_a"})
    assert (rule.rule_key, rule.source) == ("rule_us", "rollout")


def test_cast_variable() -> None:
    assert cast_variable("true", "boolean") is True
    assert cast_variable("TRUE", "boolean") is False
    assert cast_variable("12", "integer") == 12
    assert cast_variable("1.5", "integer") is None
    assert cast_variable("1.5", "double") == 1.5
    assert cast_variable('{"a": 1}', "json") == {"a": 1}
    assert cast_variable("{", "json") is None
    assert cast_variable("x", "string") == "x"


def test_unusable_config_decides_nothing() -> None:
    d = Decider(load_config({**DATAFILE, "version": "1"}))
    assert d.get_variation(d.config.experiments["plain"], "u", {}) is None
    assert d.decide_flag(d.config.flags["flag"], "u", {}).variation is None


def test_get_variation_is_fast(datafile_text: str) -> None:
    config = load_config(datafile_text)
    d = Decider(config)
    exp = config.experiments["checkout_button_color"]
    assert exp.audience_check is None
    n = 20000
    per_call = min(timeit.repeat(lambda: d.get_variation(exp, "user42", {}), number=n, repeat=3))
    assert per_call / n < 5e-6  # ~0.6 µs measured; generous for noisy CI
