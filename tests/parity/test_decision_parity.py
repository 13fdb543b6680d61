"""Decisions of xpevents vs the official optimizely-sdk 5.7.0, case by case.

Generated: every example is one datafile evaluated for ~45 users (every experiment's
``get_variation`` and every flag's ``decide``). Hand-picked: ``parity.corpus``.
When the official SDK raises for a case (it does for a numeric user version part
against a textual target part, e.g. "1.2.3-4" vs "1.2.3-beta"), the case is skipped
and counted; we answer "unknown" there instead of failing.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optimizely import optimizely
from optimizely.decision.optimizely_decide_option import OptimizelyDecideOption
from optimizely.event.event_processor import ForwardingEventProcessor
from optimizely.helpers.sdk_settings import OptimizelySdkSettings
from optimizely.optimizely_user_context import OptimizelyUserContext

from xpevents.decide.datafile import ProjectConfig, load_config
from xpevents.decide.decider import Decider

from parity.corpus import CORPUS, CorpusCase
from parity.strategies import datafiles, users

EXAMPLES = int(os.environ.get("XPEVENTS_PARITY_EXAMPLES", "60"))
STATS = {"datafiles": 0, "cases": 0, "comparisons": 0, "official_raised": 0}


class _NoDispatch:
    def dispatch_event(self, event: Any) -> None:
        pass


@pytest.fixture(autouse=True)
def _quiet_official() -> Iterator[None]:
    """The official SDK logs every decision; keep test output readable."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(previous)


def official(datafile: Mapping[str, Any], logger: Any = None) -> optimizely.Optimizely:
    """An official client on the same datafile, dispatching nothing."""
    dispatcher = _NoDispatch()
    return optimizely.Optimizely(
        json.dumps(datafile),
        event_dispatcher=dispatcher,
        logger=logger,
        skip_json_validation=True,
        # no background threads: a forwarding processor and no ODP
        event_processor=ForwardingEventProcessor(dispatcher),
        settings=OptimizelySdkSettings(odp_disabled=True),
    )


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(
        b, sort_keys=True, default=repr
    )


def check_user(
    opt: optimizely.Optimizely,
    config: ProjectConfig,
    decider: Decider,
    user_id: str,
    attributes: dict[str, Any],
    *,
    forced_variation: tuple[str, str] | None = None,
    forced_decision: tuple[str, str | None, str] | None = None,
) -> int:
    """Compare every experiment and every flag for one user; return comparisons made."""
    compared = 0
    forced_map: dict[str, str] = {}
    if forced_variation is not None:
        exp_key, var_key = forced_variation
        if opt.set_forced_variation(exp_key, user_id, var_key):
            forced_map[exp_key] = var_key
    try:
        for key, experiment in config.experiments.items():
            try:
                theirs = opt.get_variation(key, user_id, dict(attributes))
            except (ValueError, TypeError):
                STATS["official_raised"] += 1
                continue
            ours = decider.get_variation(
                experiment, user_id, attributes, forced_variation_key=forced_map.get(key)
            )
            assert (ours.key if ours else None) == theirs, (
                f"get_variation({key!r}, {user_id!r}, {attributes!r}): "
                f"ours={ours.key if ours else None!r} official={theirs!r}"
            )
            compared += 1

        context = opt.create_user_context(user_id, dict(attributes))
        forced_decisions: dict[tuple[str, str | None], str] = {}
        if forced_decision is not None:
            flag_key, rule_key, var_key = forced_decision
            context.set_forced_decision(
                OptimizelyUserContext.OptimizelyDecisionContext(flag_key, rule_key),
                OptimizelyUserContext.OptimizelyForcedDecision(var_key),
            )
            forced_decisions[(flag_key, rule_key)] = var_key
        for flag_key, flag in config.flags.items():
            try:
                d = context.decide(flag_key, [OptimizelyDecideOption.DISABLE_DECISION_EVENT])
            except (ValueError, TypeError):
                STATS["official_raised"] += 1
                continue
            fd = decider.decide_flag(
                flag,
                user_id,
                attributes,
                forced_variations=forced_map,
                forced_decisions=forced_decisions,
            )
            ours_vars = decider.variables(flag, fd) if config.usable else {}
            mine = (fd.variation_key, fd.enabled, fd.rule_key, flag_key)
            theirs_t = (d.variation_key, d.enabled, d.rule_key, d.flag_key)
            assert mine == theirs_t, (
                f"decide({flag_key!r}, {user_id!r}, {attributes!r}, forced={forced_decisions}, "
                f"{forced_map}): ours={mine} official={theirs_t}"
            )
            assert _same(ours_vars, d.variables), (
                f"variables of {flag_key!r} for {user_id!r}: "
                f"ours={ours_vars} official={d.variables}"
            )
            compared += 1
    finally:
        if forced_variation is not None and forced_map:
            opt.set_forced_variation(forced_variation[0], user_id, None)
    return compared


def _forced_choices(datafile: Mapping[str, Any]) -> tuple[list[tuple[str, str]], list[Any]]:
    exps = list(datafile["experiments"]) + [e for g in datafile["groups"] for e in g["experiments"]]
    forced_variations = [(e["key"], v["key"]) for e in exps for v in e["variations"]]
    forced_decisions: list[Any] = []
    rollouts = {r["id"]: r for r in datafile["rollouts"]}
    by_id = {e["id"]: e for e in exps}
    for flag in datafile["featureFlags"]:
        rules = [by_id[i] for i in flag["experimentIds"]]
        rules += rollouts[flag["rolloutId"]]["experiments"] if flag["rolloutId"] else []
        for rule in rules:
            for v in rule["variations"]:
                forced_decisions.append((flag["key"], rule["key"], v["key"]))
                forced_decisions.append((flag["key"], None, v["key"]))
        forced_decisions.append((flag["key"], None, "no_such_variation"))
    return forced_variations, forced_decisions


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), datafile=datafiles())
def test_generated_datafiles_decide_like_the_official_sdk(
    data: st.DataObject, datafile: dict[str, Any]
) -> None:
    config = load_config(datafile)
    decider = Decider(config)
    opt = official(datafile)
    forced_variations, forced_decisions = _forced_choices(datafile)
    people = data.draw(st.lists(users(), min_size=45, max_size=45), label="users")
    STATS["datafiles"] += 1
    try:
        _check_people(opt, config, decider, people, data, forced_variations, forced_decisions)
    finally:
        opt.close()


def _check_people(
    opt: optimizely.Optimizely,
    config: ProjectConfig,
    decider: Decider,
    people: list[tuple[str, dict[str, Any]]],
    data: st.DataObject,
    forced_variations: list[tuple[str, str]],
    forced_decisions: list[Any],
) -> None:
    for index, (user_id, attributes) in enumerate(people):
        fv = fd = None
        if index % 6 == 1 and forced_variations:
            fv = data.draw(st.sampled_from(forced_variations), label="forced variation")
        if index % 6 == 2 and forced_decisions:
            fd = data.draw(st.sampled_from(forced_decisions), label="forced decision")
        STATS["comparisons"] += check_user(
            opt, config, decider, user_id, attributes, forced_variation=fv, forced_decision=fd
        )
        STATS["cases"] += 1


def test_generated_case_counts() -> None:
    """Runs after the generated test (file order): the suite really covered enough."""
    if STATS["datafiles"] == 0:
        pytest.skip("generated parity test did not run in this session")
    assert STATS["datafiles"] >= min(50, EXAMPLES)
    assert STATS["cases"] >= min(2000, 40 * EXAMPLES)
    assert STATS["official_raised"] <= STATS["comparisons"] // 20


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_corpus_case_decides_like_the_official_sdk(case: CorpusCase) -> None:
    config = load_config(case.datafile)
    decider = Decider(config)
    opt = official(case.datafile)
    try:
        assert check_user(opt, config, decider, case.user_id, dict(case.attributes)) > 0
    finally:
        opt.close()
    if case.expect is not None:
        exp_key, expected = case.expect
        variation = decider.get_variation(
            config.experiments[exp_key], case.user_id, case.attributes
        )
        assert (variation.key if variation else None) == expected


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 100
