"""INCLUDE_REASONS vs optimizely-sdk 5.7.0: the same reason strings, in the same order,
repeats included (the official SDK repeats the reasons gathered before each experiment
of a flag), for holdout datafiles, forced decisions and forced variations; and the same
reasons logged, once each, in the same order and at the same levels, with or without
INCLUDE_REASONS.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from optimizely.decision.optimizely_decide_option import OptimizelyDecideOption as Official
from optimizely.optimizely_user_context import OptimizelyUserContext as OfficialContext

import xpevents
from xpevents.client.user_context import OptimizelyDecisionContext, OptimizelyForcedDecision
from xpevents.decide import OptimizelyDecideOption

from parity.strategies import datafiles, holdout_datafiles, users
from parity.test_decision_parity import _forced_choices, official

EXAMPLES = int(os.environ.get("XPEVENTS_PARITY_EXAMPLES", "60")) // 2
STATS = {"datafiles": 0, "reasons": 0, "logged": 0, "debug": 0, "old_api": 0}


class _NoDispatch:
    def dispatch_event(self, event: Any) -> None:
        pass


@pytest.fixture(autouse=True)
def _quiet(request: pytest.FixtureRequest) -> Iterator[None]:
    if "_log" in request.function.__name__:
        yield  # its loggers do not propagate
        return
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(previous)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    # no explain phase: tracing every line of both SDKs makes a failure take minutes
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), datafile=holdout_datafiles())
def test_reasons_like_the_official_sdk(data: st.DataObject, datafile: dict[str, Any]) -> None:
    people = data.draw(st.lists(users(), min_size=8, max_size=8))
    forced_variations, forced_decisions = _forced_choices(datafile)
    opt = official(datafile)
    STATS["datafiles"] += 1
    try:
        with xpevents.Client(datafile, event_dispatcher=_NoDispatch()) as ours:
            for index, (user_id, attributes) in enumerate(people):
                theirs_ctx = opt.create_user_context(user_id, dict(attributes))
                ours_ctx = ours.create_user_context(user_id, dict(attributes))
                if index % 3 == 1 and forced_decisions:
                    flag_key, rule_key, var_key = data.draw(st.sampled_from(forced_decisions))
                    theirs_ctx.set_forced_decision(
                        OfficialContext.OptimizelyDecisionContext(flag_key, rule_key),
                        OfficialContext.OptimizelyForcedDecision(var_key),
                    )
                    ours_ctx.set_forced_decision(
                        OptimizelyDecisionContext(flag_key, rule_key),
                        OptimizelyForcedDecision(var_key),
                    )
                if index % 3 == 2 and forced_variations:
                    exp_key, var_key = data.draw(st.sampled_from(forced_variations))
                    assert opt.set_forced_variation(exp_key, user_id, var_key)
                    assert ours.set_forced_variation(exp_key, user_id, var_key)
                theirs = theirs_ctx.decide_all([Official.INCLUDE_REASONS])
                mine = ours_ctx.decide_all([OptimizelyDecideOption.INCLUDE_REASONS])
                assert list(mine) == list(theirs)
                for key, decision in theirs.items():
                    assert list(mine[key].reasons) == list(decision.reasons), (user_id, key)
                    STATS["reasons"] += len(decision.reasons)
    finally:
        opt.close()


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))


def _capture(name: str) -> tuple[logging.Logger, _Lines]:
    logger = logging.getLogger(name)
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    lines = _Lines()
    logger.addHandler(lines)
    return logger, lines


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), datafile=holdout_datafiles())
def test_reasons_logged_like_the_official_sdk(
    data: st.DataObject, datafile: dict[str, Any]
) -> None:
    """Each reason is a log line at the official level (DEBUG and INFO ones; the few
    WARNING and ERROR ones are logged where they happen), once, in the official order."""
    people = data.draw(st.lists(users(), min_size=6, max_size=6))
    their_log, theirs_seen = _capture("parity.official")
    our_log, ours_seen = _capture("parity.xpevents")
    opt = official(datafile, logger=their_log)
    try:
        with xpevents.Client(datafile, event_dispatcher=_NoDispatch(), logger=our_log) as ours:
            for user_id, attributes in people:
                theirs = opt.create_user_context(user_id, dict(attributes)).decide_all(
                    [Official.INCLUDE_REASONS]
                )
                said = {line for d in theirs.values() for line in d.reasons}
                del theirs_seen.lines[:], ours_seen.lines[:]
                opt.create_user_context(user_id, dict(attributes)).decide_all()
                mine = ours.create_user_context(user_id, dict(attributes)).decide_all()
                assert all(not d.reasons for d in mine.values())
                expected = [
                    (level, line)
                    for level, line in theirs_seen.lines
                    if line in said and level < logging.WARNING
                ]
                got = [(level, line) for level, line in ours_seen.lines if line in said]
                assert got == expected, user_id
                STATS["logged"] += len(expected)
                STATS["debug"] += sum(level == logging.DEBUG for level, _ in expected)
                # every line the client logged at DEBUG or INFO is one of the reasons
                assert [line for _, line in ours_seen.lines if line not in said] == []
                # and INCLUDE_REASONS logs the same lines
                del ours_seen.lines[:]
                ours.create_user_context(user_id, dict(attributes)).decide_all(
                    [OptimizelyDecideOption.INCLUDE_REASONS]
                )
                assert [x for x in ours_seen.lines if x[1] in said] == expected
    finally:
        opt.close()


@settings(
    max_examples=max(EXAMPLES // 2, 5),
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), datafile=datafiles())
def test_activate_and_features_log_like_the_official_sdk(
    data: st.DataObject, datafile: dict[str, Any]
) -> None:
    """The older API (activate, get_variation, is_feature_enabled) logs the same
    decision lines as the official SDK: each line ours logs is logged there, at the
    same level and in the same order."""
    people = data.draw(st.lists(users(), min_size=4, max_size=4))
    their_log, theirs_seen = _capture("parity.official")
    our_log, ours_seen = _capture("parity.xpevents")
    opt = official(datafile, logger=their_log)
    try:
        with xpevents.Client(datafile, event_dispatcher=_NoDispatch(), logger=our_log) as ours:
            calls = [("activate", e["key"]) for e in datafile["experiments"]]
            calls += [("get_variation", e["key"]) for e in datafile["experiments"]]
            calls += [("is_feature_enabled", f["key"]) for f in datafile["featureFlags"]]
            for user_id, attributes in people:
                for method, key in calls:
                    del theirs_seen.lines[:], ours_seen.lines[:]
                    getattr(opt, method)(key, user_id, dict(attributes))
                    getattr(ours, method)(key, user_id, dict(attributes))
                    mine = [x for x in ours_seen.lines if x[0] < logging.WARNING]
                    logged = {line for _, line in mine}
                    theirs = [x for x in theirs_seen.lines if x[1] in logged]
                    assert mine == theirs, (method, key, user_id)
                    STATS["old_api"] += len(mine)
    finally:
        opt.close()


def test_reason_counts() -> None:
    if STATS["datafiles"] == 0:
        pytest.skip("generated test did not run")
    assert STATS["reasons"] > 10 * STATS["datafiles"]
    assert STATS["logged"] > 10 * STATS["datafiles"] and STATS["debug"] > STATS["datafiles"]
    assert STATS["old_api"] > STATS["datafiles"]
