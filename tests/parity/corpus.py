"""Hand-picked parity cases: boundaries and edge cases, checked against the official SDK.

Two datafiles: ``MAIN`` has one experiment per interesting condition (every semver
match against "1.2.3", "1.2.3-beta", "1.2" and "1.2.3+build", every numeric match,
exact on each value type, exists, substring, qualified, not/and/implicit-or trees,
unknown condition types, dangling audiences), a mutually exclusive group, a
whitelist, paused and launched experiments, a dangling traffic variation id, an empty
traffic entity, and flags with experiments and rollouts. ``BOUNDARY`` has ranges whose
ends sit on buckets found by search, so users land exactly on and around them.
Each case is a user; every experiment and flag of its datafile is compared.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from xpevents.decide.bucketing import bucket_value

__all__ = ["BOUNDARY", "CORPUS", "MAIN", "CorpusCase"]

_ids = itertools.count(5000)


def _id() -> str:
    return str(next(_ids))


def _experiment(
    key: str,
    *,
    audience: Any = None,
    status: str = "Running",
    n_variations: int = 1,
    traffic: list[tuple[str | int, int]] | None = None,
    forced: dict[str, str] | None = None,
) -> dict[str, Any]:
    vids = [_id() for _ in range(n_variations)]
    variations = [
        {"id": vid, "key": f"{key}_v{i}", "featureEnabled": i % 2 == 0, "variables": []}
        for i, vid in enumerate(vids)
    ]
    if traffic is None:
        step = 10000 // n_variations
        allocation = [
            {"entityId": vid, "endOfRange": 10000 if i == n_variations - 1 else step * (i + 1)}
            for i, vid in enumerate(vids)
        ]
    else:
        allocation = [
            {"entityId": vids[e] if isinstance(e, int) else e, "endOfRange": end}
            for e, end in traffic
        ]
    exp: dict[str, Any] = {
        "id": _id(),
        "key": key,
        "status": status,
        "layerId": _id(),
        "variations": variations,
        "trafficAllocation": allocation,
        "forcedVariations": forced or {},
        "audienceIds": [],
    }
    if audience is not None:
        exp["audienceConditions"] = audience
    return exp


def _cond(name: str, match: str | None, value: Any, ctype: str = "custom_attribute") -> dict:
    c: dict[str, Any] = {"name": name, "type": ctype, "value": value}
    if match is not None:
        c["match"] = match
    return c


def _base(experiments: list[dict], audiences: list[dict], **extra: Any) -> dict[str, Any]:
    datafile: dict[str, Any] = {
        "version": "4",
        "accountId": "1001",
        "projectId": "2002",
        "revision": "7",
        "anonymizeIP": True,
        "botFiltering": False,
        "sendFlagDecisions": True,
        "attributes": [{"id": _id(), "key": k} for k in ("v", "age", "country", "premium")],
        "audiences": [],
        "typedAudiences": audiences,
        "experiments": experiments,
        "groups": [],
        "featureFlags": [],
        "rollouts": [],
        "events": [{"id": _id(), "key": "purchase", "experimentIds": []}],
    }
    datafile.update(extra)
    return datafile


def _build_main() -> dict[str, Any]:
    audiences: list[dict[str, Any]] = []
    experiments: list[dict[str, Any]] = []
    audience_id: dict[str, str] = {}

    def add(key: str, conditions: Any) -> None:
        aid = _id()
        audience_id[key] = aid
        audiences.append({"id": aid, "name": key, "conditions": conditions})
        experiments.append(_experiment(key, audience=["or", aid]))

    for target in ("1.2.3", "1.2.3-beta", "1.2", "1.2.3+build"):
        for match in ("semver_eq", "semver_lt", "semver_le", "semver_gt", "semver_ge"):
            add(f"{match}_{target}", ["and", _cond("v", match, target)])
    for match, value in (("gt", 17), ("ge", 18), ("lt", 18.5), ("le", 18), ("exact", 18)):
        add(f"{match}_{value}", ["or", _cond("age", match, value)])
    add("exact_huge", ["or", _cond("age", "exact", 2**53 + 1)])
    add("exact_str", ["or", _cond("country", "exact", "US")])
    add("exact_no_match_type", ["or", _cond("country", None, "US")])
    add("exact_bool", ["or", _cond("premium", "exact", True)])
    add("exists_country", ["or", _cond("country", "exists", None)])
    add("substring_US", ["or", _cond("country", "substring", "US")])
    add("qualified", ["or", _cond("country", "qualified", "seg")])
    add("third_party", ["or", _cond("country", "exact", "US", "third_party_dimension")])
    add("unknown_type", ["or", _cond("country", "exact", "US", "other")])
    add("not_US", ["not", _cond("country", "exact", "US")])
    add("and_unknown", ["and", _cond("country", "exact", "US"), _cond("age", "gt", 17)])
    add("implicit_or", [_cond("country", "exact", "US"), _cond("premium", "exact", True)])
    add("unknown_match", ["or", _cond("country", "bogus", "US")])

    # audience trees at the experiment level, dangling audience ids
    us, adult = audience_id["exact_str"], audience_id["gt_17"]
    experiments.append(_experiment("tree_and", audience=["and", us, adult]))
    experiments.append(_experiment("tree_not", audience=["not", us]))
    experiments.append(_experiment("tree_dangling_or", audience=["or", "404", us]))
    experiments.append(_experiment("tree_dangling_only", audience=["or", "404"]))
    legacy_ids = _experiment("legacy_ids")
    legacy_ids["audienceIds"] = [us]
    experiments.append(legacy_ids)

    # status, whitelist, traffic oddities
    experiments.append(_experiment("paused", status="Paused"))
    experiments.append(_experiment("launched", status="Launched"))
    whitelisted = _experiment(
        "whitelist_vs_audience",
        audience=["or", us],
        n_variations=2,
        forced={"vip": "whitelist_vs_audience_v1", "ghost": "no_such_key"},
    )
    experiments.append(whitelisted)
    experiments.append(
        _experiment("paused_whitelist", status="Paused", forced={"vip": "paused_whitelist_v0"})
    )
    experiments.append(
        _experiment("dangling_traffic", n_variations=2, traffic=[("31337", 5000), (1, 10000)])
    )
    experiments.append(
        _experiment("empty_entity", n_variations=2, traffic=[("", 4000), (0, 10000)])
    )
    experiments.append(
        _experiment("overlap", n_variations=3, traffic=[(0, 6000), (1, 3000), (2, 8000)])
    )

    # a mutually exclusive group (with a gap and a dangling experiment id)
    g1, g2 = _experiment("group_a", n_variations=2), _experiment("group_b", n_variations=2)
    group = {
        "id": _id(),
        "policy": "random",
        "experiments": [g1, g2],
        "trafficAllocation": [
            {"entityId": g1["id"], "endOfRange": 3000},
            {"entityId": g2["id"], "endOfRange": 6000},
            {"entityId": "424242", "endOfRange": 8000},
        ],
    }

    # flags: one with an experiment and a rollout, one rollout only
    var_id = _id()
    variables = [
        {"id": var_id, "key": "size", "type": "integer", "defaultValue": "1"},
        {"id": _id(), "key": "conf", "type": "string", "subType": "json", "defaultValue": "{}"},
    ]
    rule1 = _experiment("rule_us", audience=["or", us], n_variations=1, traffic=[(0, 5000)])
    rule_all = _experiment("rule_everyone", n_variations=1)
    for exp in (rule1, rule_all):
        exp["variations"][0]["featureEnabled"] = True
        exp["variations"][0]["variables"] = [{"id": var_id, "value": "42"}]
    rollout = {"id": _id(), "experiments": [rule1, rule_all]}
    flags = [
        {
            "id": _id(),
            "key": "flag_exp",
            "experimentIds": [whitelisted["id"], g1["id"]],
            "rolloutId": rollout["id"],
            "variables": variables,
        },
        {
            "id": _id(),
            "key": "flag_rollout",
            "experimentIds": [],
            "rolloutId": rollout["id"],
            "variables": variables,
        },
        {"id": _id(), "key": "flag_empty", "experimentIds": [], "rolloutId": "", "variables": []},
    ]
    return _base(experiments, audiences, groups=[group], featureFlags=flags, rollouts=[rollout])


MAIN = _build_main()


def _user_with_bucket(entity_id: str, bucket: int, prefix: str) -> str:
    for i in itertools.count():
        candidate = f"{prefix}{i}"
        if bucket_value(candidate + entity_id) == bucket:
            return candidate
    raise AssertionError("unreachable")  # pragma: no cover


def _build_boundary() -> tuple[dict[str, Any], list[tuple[str, str | None]]]:
    exp = _experiment("edges", n_variations=2, traffic=[(0, 3333), (1, 9999)])
    users = []
    for bucket, expected in (
        (0, "edges_v0"),
        (3332, "edges_v0"),
        (3333, "edges_v1"),
        (9998, "edges_v1"),
        (9999, None),
    ):
        users.append((_user_with_bucket(exp["id"], bucket, f"b{bucket}-"), expected))
    return _base([exp], []), users


BOUNDARY, _BOUNDARY_USERS = _build_boundary()


@dataclass(frozen=True)
class CorpusCase:
    """One user checked on one datafile; ``expect`` optionally pins (experiment, variation)."""

    name: str
    datafile: dict[str, Any]
    user_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    expect: tuple[str, str | None] | None = None


_VERSIONS = (
    "1.2.3",
    "1.2.3-beta",
    "1.2.3-alpha",
    "1.2.3-beta.1",
    "1.2.3+build",
    "1.2.3+build.5",
    "1.2",
    "1.2.4",
    "1.3",
    "2",
    "1",
    "1.2.2",
    " 1.2.3",
    "1.2.3 ",
    "1.2.3.4",
    "1..3",
    "",
    "a.b.c",
    "1.2.3-beta+exp",
    "1.2.3+build-x",
    "01.02.03",
    "1.2.3-",
    "v1.2.3",
    "1.2.x",
)
_NUMBERS: tuple[Any, ...] = (
    17,
    18,
    18.0,
    18.5,
    19,
    -1,
    0,
    True,
    False,
    "18",
    None,
    float("nan"),
    float("inf"),
    float("-inf"),
    2**53,
    2**53 + 1,
    -(2**53),
    1e300,
    -0.0,
    9007199254740993.0,
)
_COUNTRIES: tuple[Any, ...] = ("US", "us", "USA", "CA", "", 1, True, None, ["US"])


def _cases() -> list[CorpusCase]:
    cases: list[CorpusCase] = []
    for v in _VERSIONS:
        cases.append(CorpusCase(f"version[{v!r}]", MAIN, "user1", {"v": v}))
    cases.append(CorpusCase("version_int", MAIN, "user1", {"v": 123}))
    cases.append(CorpusCase("version_none", MAIN, "user1", {"v": None}))
    for n in _NUMBERS:
        cases.append(CorpusCase(f"age[{n!r}]", MAIN, "user2", {"age": n}))
    for c in _COUNTRIES:
        cases.append(CorpusCase(f"country[{c!r}]", MAIN, "user3", {"country": c, "age": 20}))
    cases.append(CorpusCase("premium_true", MAIN, "user4", {"premium": True}))
    cases.append(CorpusCase("premium_one", MAIN, "user4", {"premium": 1}))
    cases.append(CorpusCase("premium_false_us", MAIN, "user4", {"premium": False, "country": "US"}))
    cases.append(CorpusCase("no_attributes", MAIN, "user5", {}))
    cases.append(CorpusCase("all_none", MAIN, "user5", dict.fromkeys(("v", "age", "country"))))
    for uid in ("vip", "ghost", "VIP", "", "ü-ñ-€"):
        cases.append(CorpusCase(f"whitelist[{uid!r}]", MAIN, uid, {"country": "CA"}))
    cases.append(CorpusCase("whitelist_meets_audience", MAIN, "vip", {"country": "US"}))
    for bid in ("bucket-1", "bucket-2", "", "user1", 7, None, True, 1.5):
        cases.append(
            CorpusCase(f"bucketing_id[{bid!r}]", MAIN, "user6", {"$opt_bucketing_id": bid})
        )
    for i in range(24):
        cases.append(CorpusCase(f"group_user{i}", MAIN, f"g-user-{i}", {"country": "US"}))
    for i in range(6):
        cases.append(CorpusCase(f"rollout_not_us{i}", MAIN, f"r-user-{i}", {"country": "FR"}))
    for uid, expected in _BOUNDARY_USERS:
        cases.append(CorpusCase(f"boundary[{uid}]", BOUNDARY, uid, {}, ("edges", expected)))
    cases.append(
        CorpusCase(
            "boundary_bucketing_id",
            BOUNDARY,
            "someone",
            {"$opt_bucketing_id": _BOUNDARY_USERS[2][0]},
            ("edges", _BOUNDARY_USERS[2][1]),
        )
    )
    return cases


CORPUS: list[CorpusCase] = _cases()
