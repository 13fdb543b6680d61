"""Sticky bucketing through ``Client(user_profile_service=...)``: the official semantics."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import xpevents
from test_datafile_acceptance import base
from xpevents.decide import OptimizelyDecideOption
from xpevents.errors import ConfigError


class _NoDispatch:
    def dispatch_event(self, event: Any) -> None:
        pass


class Profiles:
    def __init__(self, profiles: dict[str, Any] | None = None) -> None:
        self.profiles = profiles or {}
        self.calls: list[str] = []
        self.fail_lookup = self.fail_save = False

    def lookup(self, user_id: str) -> Any:
        self.calls.append("lookup")
        if self.fail_lookup:
            raise TimeoutError("down")
        return self.profiles.get(user_id)

    def save(self, profile: dict[str, Any]) -> None:
        self.calls.append("save")
        if self.fail_save:
            raise TimeoutError("down")
        self.profiles[profile["user_id"]] = profile


def two_way() -> dict[str, Any]:
    doc = base()
    exp = doc["experiments"][0]
    exp["variations"].append({"id": "v2", "key": "off", "featureEnabled": False})
    exp["trafficAllocation"] = [{"entityId": "v2", "endOfRange": 10000}]
    doc["featureFlags"][0]["rolloutId"] = "r"
    doc["rollouts"] = [
        {
            "id": "r",
            "experiments": [
                {
                    "id": "re",
                    "key": "everyone",
                    "status": "Running",
                    "layerId": "lr",
                    "audienceIds": [],
                    "forcedVariations": {},
                    "variations": [{"id": "rv", "key": "rv", "featureEnabled": True}],
                    "trafficAllocation": [{"entityId": "rv", "endOfRange": 10000}],
                }
            ],
        }
    ]
    return doc


def client(ups: Any, doc: dict[str, Any] | None = None) -> xpevents.Client:
    return xpevents.Client(
        doc or two_way(), event_dispatcher=_NoDispatch(), user_profile_service=ups
    )


def test_a_stored_variation_wins_over_bucketing_and_audiences() -> None:
    ups = Profiles({"u": {"user_id": "u", "experiment_bucket_map": {"e1": {"variation_id": "v1"}}}})
    doc = two_way()
    doc["experiments"][0]["audienceIds"] = ["a1"]  # u does not meet it
    with client(ups, doc) as c:
        d = c.decide("u", "flag", options=[OptimizelyDecideOption.INCLUDE_REASONS])
        assert (d.variation_key, d.rule_key) == ("on", "exp")
        assert d.reasons[-1] == (
            'Returning previously activated variation ID "on" of experiment "exp" for user '
            '"u" from user profile.'
        )
        assert c.activate("exp", "u") == "on"
    assert ups.calls == ["lookup", "lookup"]  # nothing new stored: no save


def test_bucketing_is_stored_once_per_call_and_rollouts_never() -> None:
    ups = Profiles()
    with client(ups) as c:
        assert c.decide_all("u")["flag"].variation_key == "off"
    assert ups.calls == ["lookup", "save"]
    assert ups.profiles["u"] == {
        "user_id": "u",
        "experiment_bucket_map": {"e1": {"variation_id": "v2"}},
    }
    doc = two_way()
    doc["experiments"][0]["status"] = "Paused"  # the flag falls to its rollout
    ups2 = Profiles()
    with client(ups2, doc) as c:
        assert c.decide("u", "flag").rule_key == "everyone"
    assert ups2.calls == ["lookup"]


def test_stale_and_malformed_profiles_are_rebucketed_and_counted() -> None:
    ups = Profiles(
        {
            "stale": {"user_id": "stale", "experiment_bucket_map": {"e1": {"variation_id": "x"}}},
            "bad": {"user_id": "bad", "experiment_bucket_map": ["not", "a", "dict"]},
            "half": {"user_id": "half"},
        }
    )
    with client(ups) as c:
        for user in ("stale", "bad", "half"):
            assert c.decide(user, "flag").variation_key == "off"
        assert c.user_profiles.stats()["malformed"] == 2
    assert ups.profiles["stale"]["experiment_bucket_map"] == {"e1": {"variation_id": "v2"}}


def test_a_failing_store_never_fails_a_decision(caplog: pytest.LogCaptureFixture) -> None:
    ups = Profiles()
    ups.fail_lookup = ups.fail_save = True
    with caplog.at_level(logging.INFO), client(ups) as c:
        assert c.decide("u", "flag").variation_key == "off"
        assert c.activate("exp", "u") == "off"
        stats = c.user_profiles.stats()
    assert stats["lookup_errors"] == 2 and stats["save_errors"] == 2
    assert 'Unable to retrieve user profile for user "u" as lookup failed.' in caplog.text
    assert 'Failed to save user profile of user "u"' in caplog.text


def test_ignore_user_profile_service_makes_no_call() -> None:
    ups = Profiles()
    with client(ups) as c:
        c.decide("u", "flag", options=[OptimizelyDecideOption.IGNORE_USER_PROFILE_SERVICE])
        c.decide_all("u", options=["IGNORE_USER_PROFILE_SERVICE"])
    assert ups.calls == []


def test_a_service_without_the_interface_is_refused() -> None:
    with pytest.raises(ConfigError, match="lookup"):
        client(object())
