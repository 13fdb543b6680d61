"""The parts behind xpevents.Client, tested on their own: argument checks, forced
variations, reporting order, and a user context that needs only the public client."""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path
from typing import Any

import pytest

import xpevents.client.user_context as user_context_module
from xpevents.client import Client
from xpevents.client.inputs import Inputs
from xpevents.client.notifications import NotificationCenter, NotificationType
from xpevents.client.reporting import Reporter
from xpevents.client.shared import ForcedVariations
from xpevents.client.user_context import OptimizelyUserContext
from xpevents.decide import Decision, InvalidInputError, UnknownKeyError
from xpevents.decide.datafile import ProjectConfig, load_config
from xpevents.errors import DispatchError
from xpevents.events.builder import EventBuilder

EXPERIMENT = "checkout_button_color"


@pytest.fixture
def config(datafile_text: str) -> ProjectConfig:
    return load_config(datafile_text)


def _inputs(config: ProjectConfig, *, strict: bool = False) -> Inputs:
    return Inputs(config, logging.getLogger("xpevents.client"), strict)


# ---------------------------------------------------------------------- ForcedVariations


def test_forced_variations_replace_inner_dicts_never_mutate_them() -> None:
    forced = ForcedVariations()
    assert forced.of("u") is None
    forced.set("u", "exp_a", "on")
    before = forced.of("u")
    forced.set("u", "exp_b", "off")
    assert before == {"exp_a": "on"}  # a reader's snapshot never changes under it
    assert forced.of("u") == {"exp_a": "on", "exp_b": "off"}
    forced.clear("u", "exp_a")
    forced.clear("u", "missing")
    assert forced.of("u") == {"exp_b": "off"}
    forced.clear("u", "exp_b")
    assert forced.of("u") is None


# ---------------------------------------------------------------------------- Inputs


def test_inputs_report_the_first_bad_argument(
    config: ProjectConfig, caplog: pytest.LogCaptureFixture
) -> None:
    inputs = _inputs(config)
    with caplog.at_level(logging.DEBUG, logger="xpevents.client"):
        assert inputs.experiment("activate", 5, None, "x") is None
        assert inputs.experiment("activate", EXPERIMENT, None, "x") is None
        assert inputs.experiment("activate", EXPERIMENT, "u", "x") is None
        assert inputs.experiment("activate", "nope", "u", "x") is None
    assert [r.getMessage() for r in caplog.records] == [
        'activate: provided "experiment_key" is in an invalid format: 5.',
        'activate: provided "user_id" is in an invalid format: None.',
        "activate: provided \"attributes\" is in an invalid format: 'x'.",
        'activate: experiment key "nope" is not in the datafile.',
    ]
    assert inputs.experiment("activate", EXPERIMENT, "u", {}) is config.experiments[EXPERIMENT]


def test_inputs_strict_raises_instead_of_logging(config: ProjectConfig) -> None:
    inputs = _inputs(config, strict=True)
    with pytest.raises(InvalidInputError, match='"event_tags"'):
        inputs.event("purchase", "u", None, ["not", "a", "dict"])
    with pytest.raises(UnknownKeyError, match='feature flag key "nope"'):
        inputs.flag("is_feature_enabled", "nope", "u", None)
    with pytest.raises(InvalidInputError, match="matching getter"):
        inputs.wrong_variable_type("get_feature_variable_integer", "v", "string", "integer")


def test_create_user_context_refuses_empty_non_dict_attributes(config: ProjectConfig) -> None:
    inputs = _inputs(config)
    assert inputs.user("u", [], "decide_all")  # falsy attributes pass elsewhere
    assert not inputs.new_user("u", [])
    assert inputs.new_user("u", None)
    assert inputs.new_user("u", {})


def test_unusable_datafile_is_reported_at_each_call(
    datafile_text: str, caplog: pytest.LogCaptureFixture
) -> None:
    datafile = {**json.loads(datafile_text), "version": "1"}
    inputs = _inputs(load_config(datafile))
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="xpevents.client"):
        assert inputs.flag("is_feature_enabled", "new_checkout", "u", None) is None
        assert not inputs.ready("decide")
    assert [r.getMessage() for r in caplog.records] == [
        'is_feature_enabled: the datafile cannot be used; failing "is_feature_enabled".',
        'decide: the datafile cannot be used; failing "decide".',
    ]


# -------------------------------------------------------------------------- Reporter


class _Dispatcher:
    def __init__(self, calls: list[str], raises: bool = False) -> None:
        self.calls = calls
        self.raises = raises

    def dispatch_event(self, event: Any) -> None:
        self.calls.append("dispatch")
        if self.raises:
            raise ConnectionError("down")


def _reporter(config: ProjectConfig, calls: list[str], **kw: Any) -> Reporter:
    center = NotificationCenter()
    for kind in NotificationType:
        center.add_notification_listener(kind, lambda *a, _k=kind: calls.append(_k.value))
    dispatcher = _Dispatcher(calls, raises=kw.pop("raises", False))
    log = logging.getLogger("xpevents.client")
    return Reporter(EventBuilder(config), dispatcher, center, log=log, **kw)


def test_reporter_order_is_log_event_dispatch_then_listeners(config: ProjectConfig) -> None:
    calls: list[str] = []
    report = _reporter(config, calls, strict=False)
    experiment = config.experiments[EXPERIMENT]
    variation = experiment.variations[0]
    report.impression(experiment, variation, "u", None, "", EXPERIMENT, "experiment", True)
    report.conversion(config.events["purchase"], "u", None, {"revenue": 1})
    assert calls == ["log_event", "dispatch", "activate", "log_event", "dispatch", "track"]


def test_reporter_hands_listeners_the_official_event_dict(config: ProjectConfig) -> None:
    center = NotificationCenter()
    seen: list[Any] = []
    center.add_notification_listener(NotificationType.TRACK, lambda *args: seen.append(args))
    log = logging.getLogger("xpevents.client")
    report = Reporter(EventBuilder(config), _Dispatcher([]), center, strict=False, log=log)
    report.conversion(config.events["purchase"], "u", {"country": "FR"}, None)
    [(event_key, user_id, attributes, tags, event)] = seen
    assert (event_key, user_id, attributes, tags) == ("purchase", "u", {"country": "FR"}, None)
    assert list(event) == ["url", "params", "http_verb", "headers"]


def test_reporter_strict_raises_dispatch_error_and_skips_listeners(config: ProjectConfig) -> None:
    calls: list[str] = []
    report = _reporter(config, calls, strict=True, raises=True)
    with pytest.raises(DispatchError):
        report.conversion(config.events["purchase"], "u", None, None)
    assert calls == ["log_event", "dispatch"]


# ---------------------------------------------------------------------- user context


def test_user_context_module_does_not_import_the_client_module() -> None:
    tree = ast.parse(Path(user_context_module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not {name for name in imported if name and name.startswith("xpevents.client")}


def test_user_context_works_with_any_client_offering_flag_decisions() -> None:
    """The context needs only ``flag_decisions`` and ``track``, no private member."""

    class Decisions:
        def __init__(self) -> None:
            self.calls: list[tuple[Any, ...]] = []

        def decide_one(self, *args: Any) -> Decision:
            self.calls.append(("one", *args))
            return Decision(flag_key=args[2], user_id=args[0], user_context=args[5])

        def decide_many(self, *args: Any) -> dict[str, Decision]:
            self.calls.append(("many", *args))
            return {}

    class FakeClient:
        def __init__(self) -> None:
            self.flag_decisions = Decisions()
            self.tracked: list[tuple[Any, ...]] = []

        def track(self, *args: Any) -> None:
            self.tracked.append(args)

    client = FakeClient()
    user = OptimizelyUserContext(client, "u", {"a": 1})
    user.set_forced_decision(
        user.OptimizelyDecisionContext("f"), user.OptimizelyForcedDecision("v")
    )
    decision = user.decide("f")
    user.decide_all()
    user.track_event("purchase")
    (one, *_), (many, *_) = client.flag_decisions.calls
    assert one == "one" and many == "many"
    assert client.flag_decisions.calls[0][1:5] == ("u", {"a": 1}, "f", None)
    assert client.flag_decisions.calls[0][5] == {("f", None): "v"}
    assert decision.user_context is not user  # a snapshot, as the official SDK does
    assert client.tracked == [("purchase", "u", {"a": 1}, None)]


def test_client_and_its_user_contexts_share_one_flag_decisions(datafile_text: str) -> None:
    client = Client(datafile_text, _Dispatcher([]))
    user = client.create_user_context("u")
    assert user is not None and user.client is client
    assert user.decide("new_checkout") == client.decide("u", "new_checkout")
