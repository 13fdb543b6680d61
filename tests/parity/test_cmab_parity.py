"""CMAB experiments with no prediction service: the same answers as optimizely-sdk 5.7.0.

xpevents has no CMAB client. A user outside a CMAB experiment's traffic gets "not in
CMAB experiment ... due to traffic allocation" and the flag's next rules; a user inside
it gets the official error decision ("Failed to fetch CMAB data for experiment ..."),
no variation, no event, exactly what optimizely-sdk answers when its prediction
endpoint cannot be reached (here: a dead loopback port).
"""

from __future__ import annotations

import copy
import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from optimizely import optimizely
from optimizely.decision.optimizely_decide_option import OptimizelyDecideOption as Official
from optimizely.event.event_processor import ForwardingEventProcessor
from optimizely.helpers.sdk_settings import OptimizelySdkSettings

import xpevents
from xpevents.decide import OptimizelyDecideOption

from parity.test_profile_parity import _split_datafile


class Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def dispatch_event(self, event: Any) -> None:
        self.events.append(event)


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(previous)


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/predict/{{}}"


def cmab_datafile(share: int) -> dict[str, Any]:
    doc = _split_datafile("1", 5000)
    doc["experiments"][0]["cmab"] = {"attributeIds": [], "trafficAllocation": share}
    rule = copy.deepcopy(doc["experiments"][0])
    del rule["cmab"]
    rule.update(id="r1", key="everyone", layerId="lr")
    doc["rollouts"] = [{"id": "ro", "experiments": [rule]}]
    doc["featureFlags"][0]["rolloutId"] = "ro"
    return doc


@pytest.mark.parametrize("share", [0, 5000, 10000])
@pytest.mark.parametrize("with_reasons", [False, True])
def test_cmab_rule_without_the_service(share: int, with_reasons: bool) -> None:
    doc = cmab_datafile(share)
    theirs_events, ours_events = Recorder(), Recorder()
    opt = optimizely.Optimizely(
        json.dumps(doc),
        event_dispatcher=theirs_events,
        event_processor=ForwardingEventProcessor(theirs_events),
        settings=OptimizelySdkSettings(odp_disabled=True, cmab_prediction_endpoint=_dead_url()),
    )
    theirs_opts = [Official.INCLUDE_REASONS] if with_reasons else []
    ours_opts = [OptimizelyDecideOption.INCLUDE_REASONS] if with_reasons else []
    try:
        with xpevents.Client(doc, event_dispatcher=ours_events) as ours:
            for user in (f"u{i}" for i in range(12)):
                t = opt.create_user_context(user).decide("flag", list(theirs_opts))
                m = ours.create_user_context(user).decide("flag", list(ours_opts))
                assert (m.variation_key, m.enabled, m.rule_key, dict(m.variables)) == (
                    t.variation_key,
                    t.enabled,
                    t.rule_key,
                    dict(t.variables),
                ), user
                assert list(m.reasons) == list(t.reasons), user
                assert ours.activate("checkout", user) == opt.activate("checkout", user)
    finally:
        opt.close()
    assert len(ours_events.events) == len(theirs_events.events)
