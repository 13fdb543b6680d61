"""Sticky bucketing vs optimizely-sdk 5.7.0: both clients given equivalent profile stores.

Each example: a generated datafile, users, and a store pre-filled per user with one of
the profile shapes a real store may hold: none, valid (a real variation id of an
experiment), stale (a variation id the experiment no longer has), one entry without a
variation id, a profile missing a key, and a store whose ``lookup`` or ``save`` raises.
Both clients then run the same calls (``decide_all``, ``decide`` with and without
``IGNORE_USER_PROFILE_SERVICE``, ``decide_for_keys``, ``activate``, ``get_variation``,
``is_feature_enabled``); every answer, the number of lookups and saves, and the stored
profiles at the end must be equal.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optimizely.decision.optimizely_decide_option import OptimizelyDecideOption as Official

import xpevents
from xpevents.decide import OptimizelyDecideOption

from parity.strategies import datafiles, users
from parity.test_decision_parity import official

EXAMPLES = int(os.environ.get("XPEVENTS_PARITY_EXAMPLES", "60")) // 2
SHAPES = ("none", "valid", "stale", "no_variation_id", "missing_key", "raises", "save_raises")
STATS = {"datafiles": 0, "calls": 0, "sticky": 0}


class DictProfiles:
    """A user-written UPS like the official README's: a dict of profiles."""

    def __init__(self, profiles: dict[str, Any], *, raises: set[str], save_raises: set[str]):
        self.profiles = profiles
        self.raises = raises
        self.save_raises = save_raises
        self.lookups = 0
        self.saves = 0

    def lookup(self, user_id: str) -> Any:
        self.lookups += 1
        if user_id in self.raises:
            raise ConnectionError("store down")
        return copy.deepcopy(self.profiles.get(user_id))

    def save(self, user_profile: dict[str, Any]) -> None:
        self.saves += 1
        if user_profile["user_id"] in self.save_raises:
            raise ConnectionError("store down")
        self.profiles[user_profile["user_id"]] = copy.deepcopy(user_profile)


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(previous)


def _experiments(datafile: dict[str, Any]) -> list[dict[str, Any]]:
    return list(datafile["experiments"]) + [e for g in datafile["groups"] for e in g["experiments"]]


@st.composite
def stores(draw: st.DrawFn, datafile: dict[str, Any], user_ids: list[str]) -> dict[str, Any]:
    """Pre-filled profiles per user, and who raises."""
    exps = _experiments(datafile)
    profiles: dict[str, Any] = {}
    raises: set[str] = set()
    save_raises: set[str] = set()
    for user_id in user_ids:
        shape = draw(st.sampled_from(SHAPES))
        bucket_map: dict[str, Any] = {}
        for exp in draw(st.lists(st.sampled_from(exps), max_size=3)) if exps else []:
            if shape == "valid" and exp["variations"]:
                variation = draw(st.sampled_from(exp["variations"]))
                bucket_map[exp["id"]] = {"variation_id": variation["id"]}
            elif shape == "stale":
                bucket_map[exp["id"]] = {"variation_id": "gone"}
            elif shape == "no_variation_id":
                bucket_map[exp["id"]] = {}
        if shape == "missing_key":
            profiles[user_id] = {"user_id": user_id}
        elif shape != "none":
            profiles[user_id] = {"user_id": user_id, "experiment_bucket_map": bucket_map}
        if shape == "raises":
            raises.add(user_id)
        if shape == "save_raises":
            save_raises.add(user_id)
    return {"profiles": profiles, "raises": raises, "save_raises": save_raises}


def _calls(client: Any, user_id: str, attributes: dict[str, Any], keys: list[str], ignore: Any):
    """The same calls on either client; returns comparable answers."""
    out: list[Any] = []
    context = client.create_user_context(user_id, dict(attributes))
    decided = context.decide_all()
    out.append([(k, d.variation_key, d.enabled, d.rule_key) for k, d in decided.items()])
    for key in keys[:2]:
        d = context.decide(key, [ignore])
        out.append((d.variation_key, d.rule_key))
    for_keys = context.decide_for_keys(["no-such-flag", *reversed(keys)])
    out.append([(k, d.variation_key) for k, d in for_keys.items()])
    return out


def _legacy(client: Any, user_id: str, attributes: dict[str, Any], datafile: dict[str, Any]):
    out: list[Any] = []
    for exp in _experiments(datafile):
        out.append(client.activate(exp["key"], user_id, dict(attributes)))
        out.append(client.get_variation(exp["key"], user_id, dict(attributes)))
    for flag in datafile["featureFlags"]:
        out.append(client.is_feature_enabled(flag["key"], user_id, dict(attributes)))
    return out


class _NoDispatch:
    def dispatch_event(self, event: Any) -> None:
        pass


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), datafile=datafiles())
def test_sticky_bucketing_like_the_official_sdk(data: st.DataObject, datafile: dict) -> None:
    people = data.draw(st.lists(users(), min_size=8, max_size=8, unique_by=lambda u: u[0]))
    store = data.draw(stores(datafile, [u for u, _ in people]))
    theirs_store = DictProfiles(copy.deepcopy(store["profiles"]), **_who(store))
    ours_store = DictProfiles(copy.deepcopy(store["profiles"]), **_who(store))
    opt = official(datafile)
    opt.decision_service.user_profile_service = theirs_store
    opt.user_profile_service = theirs_store
    keys = [f["key"] for f in datafile["featureFlags"]]
    STATS["datafiles"] += 1
    with xpevents.Client(
        datafile, event_dispatcher=_NoDispatch(), user_profile_service=ours_store
    ) as ours:
        try:
            for user_id, attributes in people:
                theirs_out = _calls(
                    opt, user_id, attributes, keys, Official.IGNORE_USER_PROFILE_SERVICE
                )
                ours_out = _calls(
                    ours,
                    user_id,
                    attributes,
                    keys,
                    OptimizelyDecideOption.IGNORE_USER_PROFILE_SERVICE,
                )
                assert ours_out == theirs_out, (user_id, store["profiles"].get(user_id))
                assert _legacy(ours, user_id, attributes, datafile) == _legacy(
                    opt, user_id, attributes, datafile
                )
                STATS["calls"] += 1
        finally:
            opt.close()
    assert (ours_store.lookups, ours_store.saves) == (theirs_store.lookups, theirs_store.saves)
    assert json.dumps(ours_store.profiles, sort_keys=True) == json.dumps(
        theirs_store.profiles, sort_keys=True
    )
    STATS["sticky"] += sum(
        1 for p in ours_store.profiles.values() if p.get("experiment_bucket_map")
    )
    stats = ours.user_profiles.stats()
    assert (stats["lookups"], stats["saves"]) == (ours_store.lookups, ours_store.saves)
    assert stats["lookup_errors"] <= stats["lookups"]


def _who(store: dict[str, Any]) -> dict[str, set[str]]:
    return {"raises": set(store["raises"]), "save_raises": set(store["save_raises"])}


def test_profile_case_counts() -> None:
    if STATS["datafiles"] == 0:
        pytest.skip("generated test did not run")
    assert STATS["calls"] >= 4 * STATS["datafiles"]
    assert STATS["sticky"] > 0


def _split_datafile(revision: str, first_share: int) -> dict[str, Any]:
    """One flag with a two-variation experiment; ``first_share`` of 10000 to "a"."""
    variations = [
        {"id": "va", "key": "a", "featureEnabled": True, "variables": []},
        {"id": "vb", "key": "b", "featureEnabled": False, "variables": []},
    ]
    experiment = {
        "id": "e1",
        "key": "checkout",
        "status": "Running",
        "layerId": "l1",
        "audienceIds": [],
        "forcedVariations": {},
        "variations": variations,
        "trafficAllocation": [
            {"entityId": "va", "endOfRange": first_share},
            {"entityId": "vb", "endOfRange": 10000},
        ],
    }
    return {
        "version": "4",
        "accountId": "1",
        "projectId": "2",
        "revision": revision,
        "groups": [],
        "events": [],
        "audiences": [],
        "attributes": [],
        "experiments": [experiment],
        "featureFlags": [
            {"id": "f", "key": "flag", "experimentIds": ["e1"], "rolloutId": "", "variables": []}
        ],
        "rollouts": [],
    }


def test_v1_profiles_survive_a_traffic_change_like_the_official_sdk() -> None:
    """v1 (50/50) → profiles saved → v2 (90/10): stored users keep v1's variation."""
    from xpevents.profiles import MemoryProfileStore

    v1, v2 = _split_datafile("1", 5000), _split_datafile("2", 9000)
    ours_store, theirs_store = MemoryProfileStore(), MemoryProfileStore()  # the same code
    first = [f"user-{i}" for i in range(300)]
    later = [f"late-{i}" for i in range(300)]

    def run(datafile: dict[str, Any], users: list[str]) -> tuple[list[Any], list[Any]]:
        opt = official(datafile)
        opt.decision_service.user_profile_service = theirs_store
        with xpevents.Client(
            datafile, event_dispatcher=_NoDispatch(), user_profile_service=ours_store
        ) as ours:
            mine = [ours.decide(u, "flag").variation_key for u in users]
        theirs = [opt.create_user_context(u).decide("flag").variation_key for u in users]
        opt.close()
        return mine, theirs

    mine_v1, theirs_v1 = run(v1, first)
    assert mine_v1 == theirs_v1
    mine_v2, theirs_v2 = run(v2, first + later)
    assert mine_v2 == theirs_v2
    assert mine_v2[:300] == mine_v1  # every stored user kept the v1 variation
    share_b_later = mine_v2[300:].count("b") / 300
    assert share_b_later < 0.25  # new users follow v2's 90/10 split
    assert ours_store.lookup_many(first + later) == theirs_store.lookup_many(first + later)
