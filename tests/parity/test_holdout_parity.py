"""Holdouts vs optimizely-sdk 5.7.0: decisions and the impressions they send.

Generated datafiles with global and local holdouts (``parity.strategies.
holdout_datafiles``); for each user, every flag's ``decide`` and the impression payloads
(campaign, experiment, variation, rule type, rule key, enabled) are compared with the
official SDK's.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optimizely import optimizely
from optimizely.event.event_processor import ForwardingEventProcessor
from optimizely.helpers.sdk_settings import OptimizelySdkSettings

import xpevents

from parity.strategies import holdout_datafiles, users

EXAMPLES = int(os.environ.get("XPEVENTS_PARITY_EXAMPLES", "60")) // 2
STATS = {"datafiles": 0, "held_out": 0, "decisions": 0}


class Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def dispatch_event(self, event: Any) -> None:
        self.events.append(event.params)


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(previous)


def decisions_sent(events: list[dict[str, Any]]) -> list[Any]:
    """The decision part of every impression sent (no uuids, no timestamps)."""
    out = []
    for params in events:
        for visitor in params["visitors"]:
            for snapshot in visitor["snapshots"]:
                for d in snapshot["decisions"]:
                    ids = (visitor["visitor_id"], d["campaign_id"], d["experiment_id"])
                    out.append((*ids, d["variation_id"], json.dumps(d["metadata"], sort_keys=True)))
    return out


def _answer(d: Any) -> tuple[Any, ...]:
    return (d.variation_key, d.enabled, d.rule_key, dict(d.variables))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), datafile=holdout_datafiles())
def test_holdouts_decide_like_the_official_sdk(data: st.DataObject, datafile: dict) -> None:
    people = data.draw(st.lists(users(), min_size=12, max_size=12))
    theirs_events, ours_events = Recorder(), Recorder()
    opt = optimizely.Optimizely(
        json.dumps(datafile),
        event_dispatcher=theirs_events,
        event_processor=ForwardingEventProcessor(theirs_events),
        settings=OptimizelySdkSettings(odp_disabled=True),
    )
    STATS["datafiles"] += 1
    try:
        with xpevents.Client(datafile, event_dispatcher=ours_events) as ours:
            for user_id, attributes in people:
                theirs = opt.create_user_context(user_id, dict(attributes)).decide_all()
                mine = ours.create_user_context(user_id, dict(attributes)).decide_all()
                t = {
                    k: (d.variation_key, d.enabled, d.rule_key, d.variables)
                    for k, d in theirs.items()
                }
                m = {
                    k: (d.variation_key, d.enabled, d.rule_key, dict(d.variables))
                    for k, d in mine.items()
                }
                assert json.dumps(m, default=repr) == json.dumps(t, default=repr), user_id
                STATS["decisions"] += len(m)
    finally:
        opt.close()
    assert decisions_sent(ours_events.events) == decisions_sent(theirs_events.events)
    STATS["held_out"] += sum(
        1 for d in decisions_sent(ours_events.events) if '"rule_type": "holdout"' in d[4]
    )


def test_holdout_case_counts() -> None:
    if STATS["datafiles"] == 0:
        pytest.skip("generated test did not run")
    assert STATS["held_out"] > 0, STATS
