"""INCLUDE_REASONS vs optimizely-sdk 5.7.0: the same reason strings, in the same order,
repeats included (the official SDK repeats the reasons gathered before each experiment
of a flag), for holdout datafiles, forced decisions and forced variations.
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

from parity.strategies import holdout_datafiles, users
from parity.test_decision_parity import _forced_choices, official

EXAMPLES = int(os.environ.get("XPEVENTS_PARITY_EXAMPLES", "60")) // 2
STATS = {"datafiles": 0, "reasons": 0}


class _NoDispatch:
    def dispatch_event(self, event: Any) -> None:
        pass


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
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


def test_reason_counts() -> None:
    if STATS["datafiles"] == 0:
        pytest.skip("generated test did not run")
    assert STATS["reasons"] > 10 * STATS["datafiles"]
