"""Parity with optimizely-sdk 5.7.0: variations, decisions and event payloads.

For generated datafiles (experiments, a mutually exclusive group, feature tests,
rollouts with targeted rules, typed audiences, numeric and opaque ids, every
``sendFlagDecisions`` / ``botFiltering`` / region combination) and generated users
(valid, invalid and unknown attributes, ``$opt_bucketing_id``), the official client and
ours are asked the same questions; the answers and the event payloads (``params``
ignoring ``uuid``, ``timestamp``, ``client_name`` and ``client_version``) must be equal.

The official client is wired with a ``ForwardingEventProcessor`` so that its events are
delivered synchronously, in call order.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from xpevents.client import Client
from xpevents.decide import OptimizelyDecideOption

optimizely = pytest.importorskip("optimizely.optimizely")
from optimizely.decision.optimizely_decide_option import (  # noqa: E402
    OptimizelyDecideOption as OfficialOption,
)
from optimizely.event.event_processor import ForwardingEventProcessor  # noqa: E402
from optimizely.optimizely_user_context import OptimizelyUserContext as OfficialContext  # noqa: E402

from xpevents.client.user_context import OptimizelyDecisionContext, OptimizelyForcedDecision  # noqa: E402

DATAFILES = 120
USERS_PER_DATAFILE = 30


class Recorder:
    """A dispatcher that keeps every payload it is handed."""

    def __init__(self) -> None:
        self.params: list[dict[str, Any]] = []

    def dispatch_event(self, event: Any) -> None:
        self.params.append(event.params)


def _normalised(params: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(json.dumps(params))
    body.pop("client_name")
    body.pop("client_version")
    for visitor in body["visitors"]:
        for snapshot in visitor["snapshots"]:
            for event in snapshot["events"]:
                event.pop("uuid")
                event.pop("timestamp")
    return body


# ----------------------------------------------------------------------------- datafiles


class _Ids:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.n = 1000

    def __call__(self, opaque: float = 0.0) -> str:
        self.n += 1
        if self.rng.random() < opaque:
            return f"id_{self.n}"
        return str(self.n)


ATTRIBUTES = ["country", "age", "plan", "beta", "score"]


def _condition(rng: random.Random) -> dict[str, Any]:
    name = rng.choice(ATTRIBUTES)
    if name in ("country", "plan"):
        match = rng.choice(["exact", "substring", "exists"])
        value: Any = rng.choice(["US", "FR", "pro", "free", "r"])
    elif name == "beta":
        match, value = rng.choice(["exact", "exists"]), rng.choice([True, False])
    else:
        match = rng.choice(["gt", "lt", "exact", "ge", "le", "exists"])
        value = rng.choice([10, 18, 30.5, 50])
    condition = {"name": name, "type": "custom_attribute", "match": match, "value": value}
    if match == "exists":
        condition["value"] = None
    return condition


def _tree(rng: random.Random, depth: int = 0) -> list[Any]:
    op = rng.choice(["and", "or", "not"]) if depth < 2 else "or"
    items: list[Any] = [op]
    count = 1 if op == "not" else rng.randint(1, 3)
    for _ in range(count):
        if depth < 1 and rng.random() < 0.3:
            items.append(_tree(rng, depth + 1))
        else:
            items.append(_condition(rng))
    return items


def _allocation(rng: random.Random, variation_ids: list[str]) -> list[dict[str, Any]]:
    total = rng.choice([10000, 10000, 10000, 5000, 8000])
    cuts = (
        sorted(rng.sample(range(1, total), len(variation_ids) - 1))
        if len(variation_ids) > 1
        else []
    )
    ends = [*cuts, total]
    return [{"entityId": v, "endOfRange": e} for v, e in zip(variation_ids, ends, strict=True)]


def _experiment(
    rng: random.Random,
    ids: _Ids,
    key: str,
    audiences: list[str],
    *,
    feature: bool,
    variables: list[dict[str, Any]],
    layer: bool = True,
) -> dict[str, Any]:
    variations = []
    for index in range(rng.randint(1, 3)):
        vid = ids(opaque=0.1)
        variation: dict[str, Any] = {"id": vid, "key": f"{key}_v{index}"}
        if feature:
            variation["featureEnabled"] = rng.random() < 0.7
            variation["variables"] = [
                {"id": var["id"], "value": _value(rng, var["type"])}
                for var in variables
                if rng.random() < 0.7
            ]
        else:
            variation["variables"] = []
        variations.append(variation)
    experiment: dict[str, Any] = {
        "id": ids(),
        "key": key,
        "status": rng.choice(["Running"] * 6 + ["Paused", "Not started"]),
        "layerId": (ids(opaque=0.2) if layer and rng.random() < 0.9 else ""),
        "variations": variations,
        "trafficAllocation": _allocation(rng, [v["id"] for v in variations]),
        "audienceIds": [],
        "forcedVariations": {},
    }
    if audiences and rng.random() < 0.5:
        chosen = rng.sample(audiences, rng.randint(1, min(2, len(audiences))))
        experiment["audienceIds"] = chosen
        if rng.random() < 0.5:
            experiment["audienceConditions"] = [rng.choice(["and", "or"]), *chosen]
    if rng.random() < 0.3:
        experiment["forcedVariations"] = {"forced_user": variations[0]["key"]}
    return experiment


def _value(rng: random.Random, vtype: str) -> str:
    if vtype == "boolean":
        return rng.choice(["true", "false"])
    if vtype == "integer":
        return str(rng.randint(-5, 500))
    if vtype == "double":
        return str(rng.choice([0.5, 1.25, -3.0, 100.0]))
    if vtype == "json":
        return json.dumps({"n": rng.randint(0, 9)})
    return rng.choice(["red", "blue", ""])


def make_datafile(seed: int) -> dict[str, Any]:
    """A random but valid v4 datafile."""
    rng = random.Random(seed)
    ids = _Ids(rng)
    attributes = [{"id": ids(), "key": key} for key in ATTRIBUTES if rng.random() < 0.85]
    typed = [
        {"id": ids(), "name": f"aud{i}", "conditions": _tree(rng)} for i in range(rng.randint(0, 4))
    ]
    audience_ids = [a["id"] for a in typed]
    experiments = [
        _experiment(rng, ids, f"exp_{i}", audience_ids, feature=False, variables=[])
        for i in range(rng.randint(1, 4))
    ]
    groups = []
    if rng.random() < 0.5:
        members = [
            _experiment(rng, ids, f"grp_{i}", audience_ids, feature=False, variables=[])
            for i in range(2)
        ]
        group_id = ids()
        for member in members:
            member["groupId"] = group_id
        groups.append(
            {
                "id": group_id,
                "policy": "random",
                "experiments": members,
                "trafficAllocation": _allocation(rng, [m["id"] for m in members]),
            }
        )
    flags, rollouts = [], []
    for f in range(rng.randint(1, 3)):
        variables = []
        for v, vtype in enumerate(
            rng.sample(["boolean", "integer", "double", "string", "json"], 3)
        ):
            variable = {
                "id": ids(),
                "key": f"var{v}",
                "type": "string" if vtype == "json" else vtype,
                "defaultValue": _value(rng, vtype),
            }
            if vtype == "json":
                variable["subType"] = "json"
            variables.append(variable)
        tests = [
            _experiment(
                rng, ids, f"flag{f}_test{t}", audience_ids, feature=True, variables=variables
            )
            for t in range(rng.randint(0, 2))
        ]
        experiments.extend(tests)
        rules = [
            _experiment(
                rng, ids, f"flag{f}_rule{r}", audience_ids, feature=True, variables=variables
            )
            for r in range(rng.randint(0, 2))
        ]
        everyone = _experiment(rng, ids, "", [], feature=True, variables=variables)
        everyone["key"] = everyone["id"]
        everyone["status"] = "Running"
        everyone["audienceIds"] = []
        everyone.pop("audienceConditions", None)
        rules.append(everyone)
        rollout_id = ids()
        rollouts.append({"id": rollout_id, "experiments": rules})
        flags.append(
            {
                "id": ids(),
                "key": f"flag_{f}",
                "rolloutId": rollout_id,
                "experimentIds": [t["id"] for t in tests],
                "variables": variables,
            }
        )
    events = [
        {"id": ids(), "key": f"event_{e}", "experimentIds": [x["id"] for x in experiments[:2]]}
        for e in range(2)
    ]
    datafile: dict[str, Any] = {
        "version": "4",
        "accountId": ids(),
        "projectId": ids(),
        "revision": str(rng.randint(1, 500)),
        "anonymizeIP": rng.random() < 0.5,
        "sendFlagDecisions": rng.random() < 0.5,
        "attributes": attributes,
        "audiences": [],
        "typedAudiences": typed,
        "experiments": experiments,
        "groups": groups,
        "featureFlags": flags,
        "rollouts": rollouts,
        "events": events,
    }
    bot = rng.choice([True, False, None])
    if bot is not None:
        datafile["botFiltering"] = bot
    if rng.random() < 0.3:
        datafile["region"] = "EU"
    return datafile


def make_attributes(rng: random.Random) -> dict[str, Any]:
    pool: list[tuple[str, Any]] = [
        ("country", rng.choice(["US", "FR", "DE"])),
        ("age", rng.choice([5, 17, 18, 30, 30.5, 64.0, 2**53 + 1, math.nan, math.inf])),
        ("plan", rng.choice(["pro", "free", None])),
        ("beta", rng.choice([True, False])),
        ("score", rng.choice([1, -2.5, [1, 2], {"x": 1}])),
        ("unknown_attr", "x"),
        ("$opt_bucketing_id", f"bucket{rng.randint(0, 99)}"),
        ("$opt_user_agent", "bot/1.0"),
    ]
    return {k: v for k, v in pool if rng.random() < 0.5}


def make_tags(rng: random.Random) -> dict[str, Any] | None:
    choice = rng.random()
    if choice < 0.2:
        return None
    tags: dict[str, Any] = {}
    if rng.random() < 0.6:
        tags["revenue"] = rng.choice([4200, 0, -5, 12.5, True, "100", None])
    if rng.random() < 0.6:
        tags["value"] = rng.choice([1, 2.5, "3.75", "1,234", math.nan, False, None, [1]])
    if rng.random() < 0.5:
        tags["category"] = rng.choice(["shoes", 3, None, {"nested": None, "value": None}])
    return tags


OPTION_SETS = [
    [],
    [OptimizelyDecideOption.INCLUDE_REASONS],
    [OptimizelyDecideOption.DISABLE_DECISION_EVENT],
    [OptimizelyDecideOption.EXCLUDE_VARIABLES, OptimizelyDecideOption.ENABLED_FLAGS_ONLY],
]


def _decision_tuple(decision: Any) -> tuple[Any, ...]:
    return (
        decision.variation_key,
        decision.enabled,
        json.dumps(dict(decision.variables), default=repr),  # NaN-safe comparison
        decision.rule_key,
        decision.flag_key,
        # reason texts are the engine's; only whether there are any is compared here
        bool(decision.reasons),
    )


def _run_datafile(seed: int) -> int:
    datafile = make_datafile(seed)
    rng = random.Random(seed * 7919)
    people = [
        (rng.choice([f"user{u}", f"user{u}", "forced_user", ""]), make_attributes(rng))
        for u in range(USERS_PER_DATAFILE)
    ]
    return _compare(datafile, people, rng, label=seed)


def _compare(  # noqa: C901 - one script of questions asked of both SDKs, in order
    datafile: dict[str, Any],
    people: list[tuple[str, dict[str, Any]]],
    rng: random.Random,
    label: Any = None,
) -> int:
    """Ask both clients the same questions for ``people``; return the number of cases."""
    seed = label
    official_events, our_events = Recorder(), Recorder()
    try:
        official = optimizely.Optimizely(
            json.dumps(datafile), event_processor=ForwardingEventProcessor(official_events)
        )
    except Exception:  # the official SDK crashes on some odd datafiles: nothing to compare
        return 0
    ours = Client(datafile, our_events)
    if official.config_manager.get_config() is None:
        # the official SDK refuses this datafile: ours must decide nothing either
        assert not ours.config.usable
        for user_id, attributes in people:
            for e in datafile["experiments"]:
                assert ours.activate(e["key"], user_id, dict(attributes)) is None
        assert not our_events.params
        return len(people)
    experiments = [e["key"] for e in datafile["experiments"]] + [
        e["key"] for g in datafile["groups"] for e in g["experiments"]
    ]
    flags = [f["key"] for f in datafile["featureFlags"]]
    cases = 0
    for user_id, attributes in people:
        for key in experiments:
            if rng.random() < 0.3:
                variation = rng.choice([None, f"{key}_v0", f"{key}_v1", "no_such_variation"])
                assert official.set_forced_variation(key, user_id, variation) == (
                    ours.set_forced_variation(key, user_id, variation)
                )
            expected = official.activate(key, user_id, dict(attributes))
            assert ours.activate(key, user_id, dict(attributes)) == expected, (seed, key, user_id)
            cases += 1
        for key in [*flags, "no_such_flag"]:
            options = rng.choice(OPTION_SETS)
            official_context = official.create_user_context(user_id, dict(attributes))
            our_context = ours.create_user_context(user_id, dict(attributes))
            assert our_context is not None
            if rng.random() < 0.25 and key in flags:
                rule = rng.choice([None, *experiments, "no_such_rule"])
                variation = rng.choice(
                    [f"{key}_v0", "no_such_variation"] + [f"{e}_v0" for e in experiments]
                )
                official_context.set_forced_decision(
                    OfficialContext.OptimizelyDecisionContext(key, rule),
                    OfficialContext.OptimizelyForcedDecision(variation),
                )
                our_context.set_forced_decision(
                    OptimizelyDecisionContext(key, rule), OptimizelyForcedDecision(variation)
                )
            official_options = [getattr(OfficialOption, o.name) for o in options]
            expected_decision = official_context.decide(key, official_options)
            got = our_context.decide(key, options)
            assert _decision_tuple(got) == _decision_tuple(expected_decision), (seed, key, user_id)
            if rng.random() < 0.2:
                expected_all = official_context.decide_all(official_options)
                got_all = our_context.decide_all(options)
                assert list(got_all) == list(expected_all)
                for flag_key, decision in expected_all.items():
                    assert _decision_tuple(got_all[flag_key]) == _decision_tuple(decision)
            # the client-level API gives the same answer as the context
            if not options and rng.random() < 0.2 and key in flags:
                assert ours.is_feature_enabled(key, user_id, dict(attributes)) == (
                    official.is_feature_enabled(key, user_id, dict(attributes))
                )
            cases += 1
        for event in datafile["events"]:
            tags = make_tags(rng)
            official.track(event["key"], user_id, dict(attributes), tags)
            ours.track(event["key"], user_id, dict(attributes), tags)
            cases += 1
    assert len(our_events.params) == len(official_events.params), seed
    for index, (mine, theirs) in enumerate(
        zip(our_events.params, official_events.params, strict=True)
    ):
        assert _normalised(mine) == _normalised(theirs), (seed, index)
    return cases + len(our_events.params)


def test_parity_with_official_sdk() -> None:
    total = sum(_run_datafile(seed) for seed in range(DATAFILES))
    assert total >= 2000


def test_parity_on_engine_strategies() -> None:
    """The same comparison on the decision engine's hypothesis datafiles and users."""
    strategies = pytest.importorskip("parity.strategies")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    counted: list[int] = []

    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        datafile=strategies.datafiles(),
        people=st.lists(strategies.users(), min_size=10, max_size=25),
        seed=st.integers(0, 2**32),
    )
    def check(
        datafile: dict[str, Any], people: list[tuple[str, dict[str, Any]]], seed: int
    ) -> None:
        counted.append(_compare(datafile, people, random.Random(seed)))

    check()
    assert sum(counted) >= 500


def test_feature_rollout_type_is_fr_only() -> None:
    datafile = make_datafile(3)
    flag = datafile["featureFlags"][0]
    test = {
        "id": "777001",
        "key": "typed_test",
        "status": "Running",
        "layerId": "777002",
        "type": "feature_rollout",
        "variations": [{"id": "777003", "key": "typed_v0", "featureEnabled": True}],
        "trafficAllocation": [{"entityId": "777003", "endOfRange": 0}],
        "audienceIds": [],
        "forcedVariations": {},
    }
    datafile["experiments"].append(test)
    flag["experimentIds"] = ["777001"]
    official = optimizely.Optimizely(
        json.dumps(datafile), event_processor=ForwardingEventProcessor(Recorder())
    )
    ours = Client(datafile, Recorder())
    for i in range(50):
        assert ours.get_variation("typed_test", f"u{i}") == official.get_variation(
            "typed_test", f"u{i}"
        )


def test_generated_datafiles_are_varied() -> None:
    datafiles = [make_datafile(seed) for seed in range(DATAFILES)]
    assert any(d["sendFlagDecisions"] for d in datafiles)
    assert any(not d["sendFlagDecisions"] for d in datafiles)
    assert any(d.get("region") == "EU" for d in datafiles)
    assert any(d["groups"] for d in datafiles)
    assert any("botFiltering" in d for d in datafiles)


def test_activate_fast_path_matches_the_official_sdk_and_our_general_path() -> None:
    """``activate`` with nobody forced, no listeners, no profile service and INFO off
    takes the client's quick path (audiences then bucketing, straight to the writer):
    its answers and payloads equal the official SDK's and those of our general path
    (taken when INFO logging is on)."""
    import logging

    checked = quick = 0
    for seed in range(60):
        datafile = make_datafile(seed)
        rng = random.Random(seed * 104729)
        people = [(f"user{u}", make_attributes(rng)) for u in range(USERS_PER_DATAFILE)]
        keys = [e["key"] for e in datafile["experiments"]] + [
            e["key"] for g in datafile["groups"] for e in g["experiments"]
        ]
        try:
            official = optimizely.Optimizely(
                json.dumps(datafile), event_processor=ForwardingEventProcessor(Recorder())
            )
        except Exception:
            continue
        if official.config_manager.get_config() is None:
            continue
        official_events, fast_events, slow_events = Recorder(), Recorder(), Recorder()
        official.event_processor = ForwardingEventProcessor(official_events)
        fast = Client(datafile, fast_events)
        talkative = logging.getLogger(f"xpevents.test.quick.{seed}")
        talkative.setLevel(logging.DEBUG)
        talkative.addHandler(logging.NullHandler())
        talkative.propagate = False
        slow = Client(datafile, slow_events, logger=talkative)
        quick += sum(1 for key in keys if key in fast._engine.experiments._decider.quick_plans)
        for user_id, attributes in people:
            for key in keys:
                expected = official.activate(key, user_id, dict(attributes))
                assert fast.activate(key, user_id, dict(attributes)) == expected, (seed, key)
                assert slow.activate(key, user_id, dict(attributes)) == expected, (seed, key)
                checked += 1
        assert len(fast_events.params) == len(official_events.params) == len(slow_events.params)
        for mine, general, theirs in zip(
            fast_events.params, slow_events.params, official_events.params, strict=True
        ):
            assert _normalised(mine) == _normalised(theirs) == _normalised(general), seed
    assert checked >= 3000 and quick >= 100, (checked, quick)
