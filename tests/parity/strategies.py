"""Hypothesis strategies: v4 datafiles, users and attributes for parity tests.

``datafiles()`` builds realistic-but-nasty datafiles: experiments with random traffic
allocations (gaps, overlaps, unsorted ranges, empty and dangling entity ids), one
mutually exclusive group, typed and legacy audiences with nested and/or/not trees of
every match type, flags with experiments and rollouts (targeted rules then "everyone
else"), whitelists, events, attributes and feature variables of every type.

``users(datafile)`` builds ``(user_id, attributes)`` pairs whose attributes hit those
conditions with strings, ints, floats (NaN, inf, huge), bools, ``None``, missing keys,
versions and ``$opt_bucketing_id``.

CLIENT reuses these for payload parity: import them as ``from parity.strategies import
datafiles, users``.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

__all__ = [
    "ATTRIBUTE_NAMES",
    "USER_IDS",
    "VERSIONS",
    "attribute_values",
    "condition_trees",
    "conditions",
    "datafiles",
    "user_attributes",
    "users",
]

ATTRIBUTE_NAMES = ("country", "age", "score", "premium", "app_version", "device", "plan")
USER_IDS = (*(f"user{i}" for i in range(12)), "", "ü-ñ-€", "42", "u 1")
VERSIONS = (
    "1",
    "1.2",
    "1.2.3",
    "1.2.4",
    "1.10.0",
    "2.0.0",
    "1.2.3-beta",
    "1.2.3-alpha",
    "1.2.3-beta.2",
    "1.2.3+build",
    "1.2.3+build-1",
    "1.2",
    " 1.2.3",
    "1.2.3.4",
    "a.b.c",
    "",
    "1..2",
    "01.2.3",
    "1.2.3-",
    "2",
    "0.0.1",
)
STRINGS = ("US", "CA", "FR", "us", "mobile", "desktop", "free", "pro", "", "U", "USA")
_SPECIAL_FLOATS = (
    float("nan"),
    float("inf"),
    float("-inf"),
    1e300,
    -0.0,
    0.5,
    2.0**53,
    2.0**53 + 2,
)
_SPECIAL_INTS = (0, 1, -1, 17, 18, 2**53, 2**53 + 1, -(2**53), -(2**53) - 1, 10**20)

MATCHES = (
    "exact",
    "exists",
    "substring",
    "gt",
    "ge",
    "lt",
    "le",
    "semver_eq",
    "semver_lt",
    "semver_le",
    "semver_gt",
    "semver_ge",
)


def _json_numbers() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from((0, 1, 17, 18, 25, -3, 2**53, 2**53 + 1, 10**20, 1.5, 17.5, 1e300)),
        st.integers(-100, 100),
        st.floats(-100, 100, allow_nan=False, allow_infinity=False),
    )


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    """One leaf condition object (JSON-safe values only)."""
    match = draw(st.sampled_from((*MATCHES, *MATCHES, None, "qualified", "bogus")))
    name = draw(st.sampled_from((*ATTRIBUTE_NAMES, "missing_attr")))
    if match is None or match == "exact":
        value: Any = draw(
            st.one_of(st.sampled_from(STRINGS), _json_numbers(), st.booleans(), st.none())
        )
    elif match == "substring":
        value = draw(st.one_of(st.sampled_from(STRINGS), st.sampled_from((1, None))))
    elif match in ("gt", "ge", "lt", "le"):
        value = draw(st.one_of(_json_numbers(), st.sampled_from(("10", True, None))))
    elif match.startswith("semver"):
        value = draw(st.one_of(st.sampled_from(VERSIONS), st.sampled_from((1, None))))
    else:
        value = draw(st.one_of(st.sampled_from(STRINGS), st.none()))
    ctype = draw(
        st.sampled_from(("custom_attribute",) * 8 + ("third_party_dimension", "unknown_type", None))
    )
    cond: dict[str, Any] = {"name": name, "value": value}
    if ctype is not None:
        cond["type"] = ctype
    if match is not None:
        cond["match"] = match
    return cond


def condition_trees(
    leaves: st.SearchStrategy[Any], *, bare_lists: bool = True
) -> st.SearchStrategy[Any]:
    """and/or/not trees (explicit operators or bare lists meaning "or") over ``leaves``.

    ``bare_lists=False`` for experiment audience trees: the official SDK's
    OptimizelyConfig fails on a bare list nested in them (so does no real datafile).
    """

    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        shapes = [
            st.tuples(
                st.sampled_from(("and", "or")), st.lists(children, min_size=1, max_size=3)
            ).map(lambda t: [t[0], *t[1]]),
            children.map(lambda c: ["not", c]),
        ]
        if bare_lists:
            shapes.append(st.lists(children, min_size=1, max_size=3))
        return st.one_of(*shapes)

    return st.recursive(leaves, extend, max_leaves=6).map(
        lambda tree: tree if isinstance(tree, list) else ["or", tree]
    )


def _traffic(draw: st.DrawFn, entity_ids: list[str], dangling: str) -> list[dict[str, Any]]:
    """Random traffic: usually a clean split, sometimes gaps, overlaps, odd entities."""
    kind = draw(st.sampled_from(("split", "split", "split", "gaps", "random")))
    n = len(entity_ids)
    if kind == "split":
        cuts = sorted(draw(st.lists(st.integers(0, 10000), min_size=n - 1, max_size=n - 1)))
        ends = [*cuts, draw(st.sampled_from((10000, 10000, 10000, 5000, 9999)))]
        return [{"entityId": e, "endOfRange": end} for e, end in zip(entity_ids, ends, strict=True)]
    out = []
    for _ in range(draw(st.integers(1, 5))):
        entity = draw(st.sampled_from([*entity_ids, *entity_ids, "", dangling]))
        end = draw(st.one_of(st.integers(0, 10000), st.sampled_from((0, 1, 9999, 10000, 10001))))
        out.append({"entityId": entity, "endOfRange": end})
    if kind == "gaps":
        out.sort(key=lambda t: t["endOfRange"])
    return out


_VARIABLE_TYPES = ("boolean", "integer", "double", "string", "json")


def _variable_value(draw: st.DrawFn, vtype: str) -> str:
    good = {
        "boolean": st.sampled_from(("true", "false")),
        "integer": st.integers(-1000, 1000).map(str),
        "double": st.floats(-1e6, 1e6, allow_nan=False).map(repr),
        "string": st.text("abc xyz", max_size=6),
        "json": st.sampled_from(('{"a": 1}', "[1, 2]", '"s"', "3", '{"k": {"n": null}}')),
    }[vtype]
    bad = st.sampled_from(("", "abc", "1.5", "TRUE", "{", "nan"))
    return draw(st.one_of(good, good, good, bad))


@st.composite
def datafiles(draw: st.DrawFn) -> dict[str, Any]:  # noqa: C901 - draws a datafile field by field; a split changes only the draw order
    """A v4 datafile as a dict (``json.dumps`` it for the official SDK)."""
    counter = iter(range(10_000, 10**9))

    def new_id() -> str:
        return str(next(counter))

    attributes = [{"id": new_id(), "key": k} for k in ATTRIBUTE_NAMES]

    # audiences: typed (some overriding legacy ones), legacy-only, one dangling id
    typed: list[dict[str, Any]] = []
    legacy: list[dict[str, Any]] = []
    audience_ids: list[str] = []
    for _ in range(draw(st.integers(1, 5))):
        aid = new_id()
        audience_ids.append(aid)
        tree = draw(condition_trees(conditions()))
        where = draw(st.sampled_from(("typed", "typed", "legacy", "both")))
        if where in ("typed", "both"):
            typed.append({"id": aid, "name": f"aud {aid}", "conditions": tree})
        if where == "legacy":
            legacy.append({"id": aid, "name": f"aud {aid}", "conditions": json_text(tree)})
        if where == "both":
            dummy = '["or", {"match": "exact", "name": "$opt_dummy_attribute", '
            dummy += '"type": "custom_attribute", "value": "$opt_dummy_value"}]'
            legacy.append({"id": aid, "name": f"aud {aid}", "conditions": dummy})
    dangling_audience = "999999999"
    audience_leaf = st.sampled_from([*audience_ids, *audience_ids, dangling_audience])

    variable_defs_by_flag: list[list[dict[str, Any]]] = []

    def experiment(key: str, variables: list[dict[str, Any]], *, rollout: bool = False) -> dict:
        vids = [new_id() for _ in range(draw(st.integers(1, 4)))]
        variations = []
        for i, vid in enumerate(vids):
            var: dict[str, Any] = {"id": vid, "key": f"{key}_v{i}"}
            fe = draw(st.sampled_from((True, True, False, None)))
            if fe is not None:
                var["featureEnabled"] = fe
            usages = []
            for vdef in variables:
                if draw(st.booleans()):
                    usages.append({"id": vdef["id"], "value": _variable_value(draw, vdef["type"])})
            var["variables"] = usages
            variations.append(var)
        status = (
            "Running"
            if rollout
            else draw(st.sampled_from(("Running",) * 6 + ("Paused", "Not started", "Launched")))
        )
        forced: dict[str, str] = {}
        if not rollout and draw(st.booleans()):
            for uid in draw(st.lists(st.sampled_from(USER_IDS), max_size=3)):
                forced[uid] = draw(st.sampled_from([v["key"] for v in variations] + ["nope"]))
        exp: dict[str, Any] = {
            "id": new_id(),
            "key": key,
            "status": status,
            "layerId": new_id(),
            "variations": variations,
            "trafficAllocation": _traffic(draw, vids, "888888888"),
            "forcedVariations": forced,
            "audienceIds": draw(st.lists(audience_leaf, max_size=2, unique=True)),
        }
        shape = draw(st.sampled_from(("ids", "tree", "tree", "null", "empty")))
        if shape == "tree":
            exp["audienceConditions"] = draw(condition_trees(audience_leaf, bare_lists=False))
        elif shape == "null":
            exp["audienceConditions"] = None
        elif shape == "empty":
            exp["audienceConditions"] = []
        return exp

    # flags' variables first (experiments of a flag carry usages for them)
    n_flags = draw(st.integers(1, 4))
    for f in range(n_flags):
        defs = []
        for vtype in draw(st.lists(st.sampled_from(_VARIABLE_TYPES), max_size=5)):
            vid = new_id()
            d: dict[str, Any] = {
                "id": vid,
                "key": f"var_{f}_{vid}",
                "type": "string" if vtype == "json" else vtype,
                "defaultValue": _variable_value(draw, vtype),
            }
            if vtype == "json":
                d["subType"] = "json"
            defs.append(d)
        variable_defs_by_flag.append(defs)

    experiments = [
        experiment(f"exp_{i}", draw(st.sampled_from(variable_defs_by_flag)))
        for i in range(draw(st.integers(1, 5)))
    ]

    # one mutually exclusive group
    group_exps = [
        experiment(f"grp_exp_{i}", draw(st.sampled_from(variable_defs_by_flag)))
        for i in range(draw(st.integers(1, 3)))
    ]
    group_id = new_id()
    groups = [
        {
            "id": group_id,
            "policy": draw(st.sampled_from(("random", "random", "overlapping"))),
            "experiments": group_exps,
            "trafficAllocation": _traffic(draw, [e["id"] for e in group_exps], "777777777"),
        }
    ]

    # flags with experiments and rollouts
    flag_pool = [e["id"] for e in experiments + group_exps]
    flags, rollouts = [], []
    for f in range(n_flags):
        defs = variable_defs_by_flag[f]
        rules = [
            experiment(f"rule_{f}_{r}", defs, rollout=True) for r in range(draw(st.integers(0, 3)))
        ]
        if rules and draw(st.booleans()):
            # a classic "everyone else": no audience, everyone in its first variation
            last = rules[-1]
            last["audienceIds"] = []
            last.pop("audienceConditions", None)
            last["trafficAllocation"] = [
                {"entityId": last["variations"][0]["id"], "endOfRange": 10000}
            ]
        rollout_id = ""
        if rules or draw(st.booleans()):
            rollout_id = new_id()
            rollouts.append({"id": rollout_id, "experiments": rules})
        exp_ids = draw(st.lists(st.sampled_from(flag_pool), max_size=2, unique=True))
        flags.append(
            {
                "id": new_id(),
                "key": f"flag_{f}",
                "experimentIds": exp_ids,
                "rolloutId": rollout_id,
                "variables": defs,
            }
        )
    # "fr" (feature rollout) experiments get the flag's "everyone else" variation injected
    for exp in experiments:
        if draw(st.integers(0, 9)) == 0:
            exp["type"] = draw(st.sampled_from(("fr", "fr", "feature_rollout", "ab", "td")))

    events = [
        {"id": new_id(), "key": f"event_{i}", "experimentIds": [e["id"] for e in experiments[:i]]}
        for i in range(draw(st.integers(0, 3)))
    ]
    return {
        "version": "4",
        "accountId": "12345",
        "projectId": "67890",
        "revision": str(draw(st.integers(1, 999))),
        "anonymizeIP": draw(st.booleans()),
        "botFiltering": draw(st.booleans()),
        "sendFlagDecisions": draw(st.booleans()),
        "attributes": attributes,
        "audiences": legacy,
        "typedAudiences": typed,
        "experiments": experiments,
        "groups": groups,
        "featureFlags": flags,
        "rollouts": rollouts,
        "events": events,
        "integrations": [],
    }


def json_text(value: Any) -> str:
    """JSON text the way the legacy ``audiences[].conditions`` carries it."""
    import json

    return json.dumps(value)


def attribute_values(name: str) -> st.SearchStrategy[Any]:
    """Values for one attribute: mostly plausible for its name, sometimes anything."""
    anything = st.one_of(
        st.sampled_from(STRINGS),
        st.sampled_from(VERSIONS),
        st.sampled_from(_SPECIAL_INTS),
        st.sampled_from(_SPECIAL_FLOATS),
        st.integers(-100, 100),
        st.floats(-100, 100, allow_nan=False),
        st.booleans(),
        st.none(),
    )
    plausible = {
        "app_version": st.sampled_from(VERSIONS),
        "age": st.one_of(st.integers(0, 100), st.sampled_from(_SPECIAL_FLOATS)),
        "score": st.floats(-100, 100, allow_nan=False),
        "premium": st.booleans(),
    }.get(name, st.sampled_from(STRINGS))
    return st.one_of(plausible, plausible, anything)


@st.composite
def user_attributes(draw: st.DrawFn) -> dict[str, Any]:
    """Attributes: any subset of the names, plus sometimes ``$opt_bucketing_id``."""
    attrs: dict[str, Any] = {}
    for name in ATTRIBUTE_NAMES:
        if draw(st.integers(0, 3)) > 0:
            attrs[name] = draw(attribute_values(name))
    roll = draw(st.integers(0, 9))
    if roll == 0:
        attrs["$opt_bucketing_id"] = draw(st.sampled_from(("bucket-a", "user3", "", "x y")))
    elif roll == 1:
        attrs["$opt_bucketing_id"] = draw(st.sampled_from((7, None, True)))
    return attrs


@st.composite
def users(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A ``(user_id, attributes)`` pair; user ids include the whitelisted ones."""
    user_id = draw(st.one_of(st.sampled_from(USER_IDS), st.text("abcdef0123456789-", max_size=12)))
    return user_id, draw(user_attributes())


@st.composite
def holdout_datafiles(draw: st.DrawFn) -> dict[str, Any]:
    """A generated datafile with global and local holdouts (optimizely-sdk 5.7.0 shapes).

    Holdouts draw their audiences from the datafile's, their traffic from "all", "none"
    and random splits; local holdouts name experiment and rollout rule ids (and one that
    does not exist); some exclude targeted deliveries, some experiments become ``td``.
    """
    datafile = draw(datafiles())
    audience_ids = [a["id"] for a in datafile["typedAudiences"] + datafile["audiences"]]
    rule_ids = [e["id"] for e in datafile["experiments"]]
    rule_ids += [e["id"] for r in datafile["rollouts"] for e in r["experiments"]]
    for experiment in datafile["experiments"]:
        if draw(st.integers(0, 3)) == 0:
            experiment["type"] = "td"
    counter = iter(range(900_000, 10**9))

    def holdout(local: bool) -> dict[str, Any]:
        hid = str(next(counter))
        variations = [
            {"id": str(next(counter)), "key": f"off_{hid}", "featureEnabled": False},
        ]
        if draw(st.booleans()):
            variations.append(
                {"id": str(next(counter)), "key": f"on_{hid}", "featureEnabled": True}
            )
        share = draw(st.sampled_from([0, 10000, 500, 3000, 7000]))
        traffic = [{"entityId": variations[0]["id"], "endOfRange": share}]
        if len(variations) > 1:
            traffic.append({"entityId": variations[1]["id"], "endOfRange": min(10000, share * 2)})
        entry: dict[str, Any] = {
            "id": hid,
            "key": f"holdout_{hid}",
            "status": draw(st.sampled_from(["Running", "Running", "Running", "Draft"])),
            "variations": variations,
            "trafficAllocation": traffic,
            "audienceIds": draw(st.lists(st.sampled_from(audience_ids), max_size=2))
            if audience_ids
            else [],
            "excludeTargetedDeliveries": draw(st.booleans()),
        }
        if local:
            entry["includedRules"] = draw(
                st.lists(st.sampled_from([*rule_ids, "no-such-rule"]), min_size=1, max_size=3)
            )
        return entry

    datafile["holdouts"] = [holdout(False) for _ in range(draw(st.integers(0, 2)))]
    datafile["localHoldouts"] = [holdout(True) for _ in range(draw(st.integers(0, 2)))]
    return datafile
