"""xpevents.Client on the fixture datafile: events, bad input, strict mode, forced
variations and decisions (thread-safety included), notifications, lifecycle."""

from __future__ import annotations

import json
import logging
import math
import threading
from typing import Any

import pytest

import xpevents.client.client as client_module
from xpevents.client import Client
from xpevents.client.user_context import OptimizelyDecisionContext, OptimizelyForcedDecision
from xpevents.decide import (
    Decision,
    InvalidInputError,
    OptimizelyDecideOption,
    UnknownKeyError,
)
from xpevents.errors import DatafileError, DispatchError
from xpevents.events.model import LogEvent

EXPERIMENT = "checkout_button_color"
FLAG = "new_checkout"


class Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.closed = 0

    def dispatch_event(self, event: Any) -> None:
        self.events.append(event)

    def close(self, timeout: float = 10.0) -> None:
        self.closed += 1


class Exploding:
    def dispatch_event(self, event: Any) -> None:
        raise ConnectionError("network is down")


@pytest.fixture
def datafile(datafile_text: str) -> dict[str, Any]:
    return dict(json.loads(datafile_text))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(datafile: dict[str, Any], recorder: Recorder) -> Client:
    return Client(datafile, recorder)


def _bucketed_user(client: Client, experiment: str = EXPERIMENT) -> str:
    for i in range(1000):
        if client.get_variation(experiment, f"user{i}") is not None:
            return f"user{i}"
    raise AssertionError("nobody bucketed")


# ---------------------------------------------------------------------------- basics


def test_datafile_forms(datafile: dict[str, Any], datafile_text: str) -> None:
    for form in (datafile, datafile_text, datafile_text.encode()):
        c = Client(form, Recorder())
        assert c.config.project_id == datafile["projectId"]
    with pytest.raises(DatafileError):
        Client("{not json", Recorder())


def test_activate_sends_one_impression_get_variation_none(
    client: Client, recorder: Recorder
) -> None:
    user = _bucketed_user(client)
    assert not recorder.events
    variation = client.activate(EXPERIMENT, user, {"country": "US"})
    assert variation == client.get_variation(EXPERIMENT, user, {"country": "US"})
    assert len(recorder.events) == 1
    event = recorder.events[0]
    assert isinstance(event, LogEvent)
    decision = event.params["visitors"][0]["snapshots"][0]["decisions"][0]
    assert decision["metadata"]["rule_key"] == EXPERIMENT
    assert decision["metadata"]["variation_key"] == variation
    assert event.params["client_name"] == "xpevents"


def test_track(client: Client, recorder: Recorder) -> None:
    client.track("purchase", "u1", {"country": "US"}, {"revenue": 4200, "value": 1.5})
    assert len(recorder.events) == 1
    event = recorder.events[0].params["visitors"][0]["snapshots"][0]["events"][0]
    assert event["key"] == "purchase" and event["revenue"] == 4200 and event["value"] == 1.5
    client.track("no_such_event", "u1")
    assert len(recorder.events) == 1


def test_event_endpoint_and_client_name(datafile: dict[str, Any]) -> None:
    rec = Recorder()
    c = Client(
        datafile, rec, event_endpoint="http://127.0.0.1:9/x", client_name="n", client_version="1"
    )
    c.track("purchase", "u")
    assert rec.events[0].url == "http://127.0.0.1:9/x"
    assert rec.events[0].params["client_name"] == "n"
    assert rec.events[0].params["client_version"] == "1"


def test_feature_api(client: Client, recorder: Recorder) -> None:
    enabled = client.get_enabled_features("u1", {"country": "US"})
    assert set(enabled) <= set(client.config.flags)
    values = client.get_all_feature_variables(FLAG, "u1")
    assert values is not None and set(values) == {"steps", "express_pay"}
    assert client.get_feature_variable_integer(FLAG, "steps", "u1") == values["steps"]
    assert client.get_feature_variable(FLAG, "express_pay", "u1") == values["express_pay"]
    assert client.get_feature_variable_boolean(FLAG, "steps", "u1") is None  # wrong type
    assert client.get_feature_variable_string(FLAG, "nope", "u1") is None
    assert client.get_feature_variable_double("no_flag", "x", "u1") is None
    assert client.is_feature_enabled("no_flag", "u1") is False


# ------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda c: c.activate(EXPERIMENT, 42), None),
        (lambda c: c.activate("", "u"), None),
        (lambda c: c.activate(None, "u"), None),
        (lambda c: c.activate("no_such_experiment", "u"), None),
        (lambda c: c.activate(EXPERIMENT, "u", ["not", "a", "dict"]), None),
        (lambda c: c.get_variation(EXPERIMENT, None), None),
        (lambda c: c.track("purchase", 3), None),
        (lambda c: c.track("purchase", "u", None, "tags"), None),
        (lambda c: c.is_feature_enabled(FLAG, b"u"), False),
        (lambda c: c.get_feature_variable(FLAG, 3, "u"), None),
        (lambda c: c.set_forced_variation(EXPERIMENT, "u", "no_such_variation"), False),
        (lambda c: c.get_forced_variation(EXPERIMENT, 1), None),
        (lambda c: c.create_user_context(1), None),
        (lambda c: c.get_enabled_features(None), []),
    ],
)
def test_bad_input_never_raises(
    client: Client,
    recorder: Recorder,
    call: Any,
    expected: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="xpevents.client"):
        assert call(client) == expected
    assert not recorder.events
    assert caplog.records, "the problem is logged"


def test_bad_attribute_values_are_dropped_not_fatal(client: Client, recorder: Recorder) -> None:
    user = _bucketed_user(client)
    attrs = {"country": "US", "age": math.nan, "device_type": [1], "app_version": 2**60}
    assert client.activate(EXPERIMENT, user, attrs) is not None
    sent = recorder.events[0].params["visitors"][0]["attributes"]
    assert [a["key"] for a in sent if not a["key"].startswith("$opt_")] == ["country"]


def test_decide_bad_input(client: Client) -> None:
    decision = client.decide(42, FLAG)  # type: ignore[arg-type]
    assert decision.enabled is False and decision.reasons
    unknown = client.decide("u", "no_such_flag")
    assert unknown == Decision(flag_key="no_such_flag", user_id="u", reasons=unknown.reasons)
    assert unknown.reasons == ('No flag was found for key "no_such_flag".',)
    assert client.decide("u", FLAG, options=["NOT_AN_OPTION"]).flag_key == FLAG


def test_dispatcher_that_raises_is_contained(
    datafile: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    c = Client(datafile, Exploding())
    user = _bucketed_user(c)
    with caplog.at_level(logging.ERROR, logger="xpevents.client"):
        assert c.activate(EXPERIMENT, user) is not None
        c.track("purchase", user)
    assert "network is down" in caplog.text


def test_strict_mode_raises(datafile: dict[str, Any]) -> None:
    c = Client(datafile, Recorder(), strict=True)
    with pytest.raises(InvalidInputError, match="user_id"):
        c.activate(EXPERIMENT, 42)  # type: ignore[arg-type]
    with pytest.raises(UnknownKeyError, match="no_such_experiment"):
        c.get_variation("no_such_experiment", "u")
    with pytest.raises(UnknownKeyError):
        c.track("no_such_event", "u")
    with pytest.raises(InvalidInputError, match="NOPE"):
        c.decide("u", FLAG, options=["NOPE"])
    with pytest.raises(ValueError):  # InvalidInputError is a ValueError
        c.track("purchase", "u", event_tags="x")  # type: ignore[arg-type]
    exploding = Client(datafile, Exploding(), strict=True)
    with pytest.raises(DispatchError):
        exploding.track("purchase", "u")


def test_unusable_datafile(datafile: dict[str, Any]) -> None:
    datafile["version"] = "1"
    rec = Recorder()
    c = Client(datafile, rec)
    assert c.activate(EXPERIMENT, "u") is None
    c.track("purchase", "u")
    assert not rec.events
    assert c.decide("u", FLAG).reasons == ("Optimizely SDK not configured properly yet.",)
    with pytest.raises(DatafileError):
        Client(datafile, rec, strict=True)


# --------------------------------------------------------------- forced variations


def test_forced_variation(client: Client) -> None:
    experiment = client.config.experiments[EXPERIMENT]
    target = experiment.variations[-1].key
    assert client.set_forced_variation(EXPERIMENT, "u", target)
    assert client.get_forced_variation(EXPERIMENT, "u") == target
    assert client.activate(EXPERIMENT, "u") == target
    assert client.set_forced_variation(EXPERIMENT, "u", None)
    assert client.get_forced_variation(EXPERIMENT, "u") is None
    assert client.set_forced_variation("no_such_experiment", "u", target) is False


def test_forced_variations_are_thread_safe(client: Client) -> None:
    experiment = client.config.experiments[EXPERIMENT]
    keys = [v.key for v in experiment.variations]
    errors: list[str] = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        barrier.wait()
        for i in range(300):
            user = f"t{n}-{i % 5}"
            key = keys[(n + i) % len(keys)]
            assert client.set_forced_variation(EXPERIMENT, user, key)
            got = client.activate(EXPERIMENT, user)
            if got != key:
                errors.append(f"{user}: {got} != {key}")
            if i % 7 == 0:
                client.set_forced_variation(EXPERIMENT, user, None)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors


# -------------------------------------------------------------------- user context


def test_user_context_decide_and_forced_decisions(client: Client, recorder: Recorder) -> None:
    user = client.create_user_context("u1", {"country": "US"})
    assert user is not None
    flag = client.config.flags[FLAG]
    variation = client.config.flag_variations[FLAG][0].key
    context = OptimizelyDecisionContext(FLAG)
    assert user.get_forced_decision(context) is None
    assert user.set_forced_decision(context, OptimizelyForcedDecision(variation))
    assert user.get_forced_decision(context) == OptimizelyForcedDecision(variation)
    decision = user.decide(FLAG, [OptimizelyDecideOption.INCLUDE_REASONS])
    assert decision.variation_key == variation
    assert decision.rule_key is None
    assert decision.flag_key == flag.key
    assert decision.user_context is not None and decision.user_context.user_id == "u1"
    assert decision.reasons
    assert user.remove_forced_decision(context)
    assert not user.remove_forced_decision(context)
    user.set_forced_decision(context, OptimizelyForcedDecision(variation))
    assert user.remove_all_forced_decisions()
    assert user.get_forced_decision(context) is None
    user.set_attribute("plan", "pro")
    assert user.get_user_attributes() == {"country": "US", "plan": "pro"}
    assert user.as_json() == {"user_id": "u1", "attributes": {"country": "US", "plan": "pro"}}
    before = len(recorder.events)
    user.track_event("purchase", {"revenue": 1})
    assert len(recorder.events) == before + 1


def test_forced_decisions_are_thread_safe(client: Client) -> None:
    user = client.create_user_context("u1")
    assert user is not None
    variations = [v.key for v in client.config.flag_variations[FLAG]]
    errors: list[str] = []

    def writer() -> None:
        for i in range(500):
            user.set_forced_decision(
                OptimizelyDecisionContext(FLAG, f"r{i}"), OptimizelyForcedDecision("x")
            )
            user.remove_forced_decision(OptimizelyDecisionContext(FLAG, f"r{i}"))

    def reader() -> None:
        user.set_forced_decision(
            OptimizelyDecisionContext(FLAG), OptimizelyForcedDecision(variations[0])
        )
        for _ in range(300):
            got = user.decide(FLAG, ["DISABLE_DECISION_EVENT"]).variation_key
            if got != variations[0]:
                errors.append(str(got))

    threads = [threading.Thread(target=writer) for _ in range(3)] + [
        threading.Thread(target=reader)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors


def test_decide_options(datafile: dict[str, Any]) -> None:
    rec = Recorder()
    c = Client(datafile, rec, default_decide_options=["DISABLE_DECISION_EVENT"])
    user = c.create_user_context("u1")
    assert user is not None
    everything = user.decide_all()
    assert list(everything) == list(c.config.flags)
    assert not rec.events
    enabled = user.decide_all([OptimizelyDecideOption.ENABLED_FLAGS_ONLY])
    assert all(d.enabled for d in enabled.values())
    assert set(enabled) == {k for k, d in everything.items() if d.enabled}
    no_vars = user.decide(FLAG, ["EXCLUDE_VARIABLES"])
    assert no_vars.variables == {}
    some = user.decide_for_keys([FLAG, "missing"])
    assert some["missing"] == Decision(flag_key="missing", user_id="u1")
    assert c.decide_for_keys("u1", [FLAG])[FLAG].flag_key == FLAG


# ------------------------------------------------------------------- notifications


def test_notifications(client: Client, recorder: Recorder) -> None:
    seen: dict[str, list[tuple[Any, ...]]] = {
        "decision": [],
        "activate": [],
        "track": [],
        "log": [],
    }
    center = client.notification_center
    center.add_notification_listener("decision", lambda *a: seen["decision"].append(a))
    center.add_notification_listener(
        "ACTIVATE:experiment, user_id, attributes, variation, event",
        lambda *a: seen["activate"].append(a),
    )
    center.add_notification_listener("track", lambda *a: seen["track"].append(a))
    center.add_notification_listener("log_event", lambda *a: seen["log"].append(a))

    def broken(*_: Any) -> None:
        raise RuntimeError("listener bug")

    center.add_notification_listener("activate", broken)
    user = _bucketed_user(client)
    variation = client.activate(EXPERIMENT, user, {"country": "US"})
    assert variation is not None
    assert seen["decision"][-1] == (
        "ab-test",
        user,
        {"country": "US"},
        {"experiment_key": EXPERIMENT, "variation_key": variation},
    )
    experiment, user_id, attributes, variation_obj, event = seen["activate"][0]
    assert experiment.key == EXPERIMENT and user_id == user and variation_obj.key == variation
    assert attributes == {"country": "US"}
    assert set(event) == {"url", "params", "http_verb", "headers"}
    assert seen["log"][0] == (recorder.events[-1],)
    client.track("purchase", user, None, {"revenue": 5})
    event_key, user_id, attributes, tags, event = seen["track"][0]
    assert (event_key, user_id, attributes, tags) == ("purchase", user, None, {"revenue": 5})
    client.decide(user, FLAG)
    kind, _, _, info = seen["decision"][-1]
    assert kind == "flag"
    assert set(info) == {
        "flag_key",
        "enabled",
        "variables",
        "variation_key",
        "rule_key",
        "reasons",
        "decision_event_dispatched",
        "experiment_id",
        "variation_id",
    }


# ----------------------------------------------------------------------- lifecycle


def test_close_only_what_it_owns(datafile: dict[str, Any], monkeypatch: Any) -> None:
    passed = Recorder()
    with Client(datafile, passed):
        pass
    assert passed.closed == 0

    owned = Recorder()
    endpoints: list[Any] = []

    def factory(endpoint: Any) -> Recorder:
        endpoints.append(endpoint)
        return owned

    monkeypatch.setattr(client_module, "_default_dispatcher", factory)
    with Client(datafile, event_endpoint="http://127.0.0.1:9/e") as c:
        c.track("purchase", "u")
    assert owned.closed == 1 and endpoints == ["http://127.0.0.1:9/e"]
    c.close()
    assert owned.closed == 1  # idempotent


def test_default_dispatcher_delivers_to_a_real_collector(datafile: dict[str, Any]) -> None:
    testing = pytest.importorskip("xpevents.testing")
    with testing.run_collector() as collector:
        with Client(datafile, event_endpoint=collector.events_url) as c:
            for i in range(10):
                c.track("purchase", f"user{i}", {"country": "US"}, {"revenue": i})
        stats = collector.wait_for(unique_events=10, timeout=20)
    assert stats["unique_events"] == 10
