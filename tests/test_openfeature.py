"""xpevents.openfeature through the OpenFeature SDK's public API, end to end."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.provider import ProviderStatus
from openfeature.track import TrackingEventDetails

from xpevents import BatchDispatcher, Client, ConfigError, OptimizelyDecideOption
from xpevents.config.polling import PollingConfigManager
from xpevents.example import example_datafile
from xpevents.openfeature import XpeventsProvider
from xpevents.testing import CollectorHandle, RecordingDispatcher

from servers import Reply, datafile_server

EXAMPLE = json.loads(example_datafile())
USERS = [f"user-{i}" for i in range(60)]


@pytest.fixture
def recorder() -> RecordingDispatcher:
    return RecordingDispatcher()


@pytest.fixture
def flags(recorder: RecordingDispatcher) -> Iterator[Any]:
    provider = XpeventsProvider(
        Client(example_datafile(), event_dispatcher=recorder), stale_check_interval=None
    )
    api.set_provider_and_wait(provider)
    yield api.get_client()
    api.shutdown()
    api.clear_providers()


def _ctx(user: str, **attributes: Any) -> EvaluationContext:
    return EvaluationContext(targeting_key=user, attributes=attributes)


def test_values_variants_and_reasons_match_the_client(flags: Any) -> None:
    client = Client(example_datafile(), event_dispatcher=RecordingDispatcher())
    seen = set()
    for user in USERS:
        decision = client.decide(user, "new_checkout", {"country": "US"})
        details = flags.get_boolean_details("new_checkout", True, _ctx(user, country="US"))
        assert details.value is decision.enabled
        assert details.variant == decision.variation_key
        assert details.flag_metadata["rule_key"] == decision.rule_key
        steps = flags.get_integer_details("new_checkout.steps", -1, _ctx(user, country="US"))
        assert steps.value == decision.variables["steps"] and steps.error_code is None
        whole = flags.get_object_details("new_checkout", {}, _ctx(user, country="US"))
        assert whole.value == dict(decision.variables)
        seen.add(details.reason)
    assert Reason.TARGETING_MATCH in seen


def test_every_reason_is_reached(flags: Any) -> None:
    client = Client(example_datafile(), event_dispatcher=RecordingDispatcher())
    reasons: dict[str, str] = {}
    for flag in client.config.flags if client.config else ():
        for user in USERS:
            reasons.setdefault(flags.get_boolean_details(flag, False, _ctx(user)).reason, flag)
    assert {Reason.TARGETING_MATCH, Reason.DEFAULT} <= set(reasons)


@pytest.mark.parametrize(
    ("call", "key", "code"),
    [
        ("get_boolean_details", "no_such_flag", ErrorCode.FLAG_NOT_FOUND),
        ("get_integer_details", "new_checkout.no_such_var", ErrorCode.FLAG_NOT_FOUND),
        ("get_string_details", "new_checkout", ErrorCode.TYPE_MISMATCH),
        ("get_string_details", "new_checkout.steps", ErrorCode.TYPE_MISMATCH),
        ("get_integer_details", "smart_search.boost", ErrorCode.TYPE_MISMATCH),
    ],
)
def test_errors_return_the_default_with_the_code(
    flags: Any, call: str, key: str, code: ErrorCode
) -> None:
    default = {"get_boolean_details": True, "get_integer_details": 7, "get_string_details": "d"}
    details = getattr(flags, call)(key, default[call], _ctx("u1"))
    assert details.error_code == code and details.reason == Reason.ERROR
    assert details.value == default[call]
    assert details.error_message


def test_float_json_and_missing_targeting_key(flags: Any) -> None:
    boost = flags.get_float_details("smart_search.boost", 0.0, _ctx("u1"))
    assert isinstance(boost.value, float) and boost.error_code is None
    hours = flags.get_object_details("live_chat.hours", {}, _ctx("u1"))
    assert hours.value == {"from": 9, "to": 17}
    missing = flags.get_boolean_details("new_checkout", True, EvaluationContext())
    assert missing.error_code == ErrorCode.TARGETING_KEY_MISSING and missing.value is True


def test_a_broken_json_variable_is_a_parse_error(recorder: RecordingDispatcher) -> None:
    datafile = json.loads(example_datafile())
    live = next(f for f in datafile["featureFlags"] if f["key"] == "live_chat")
    next(v for v in live["variables"] if v["key"] == "hours")["defaultValue"] = "{not json"
    for rollout in datafile["rollouts"]:
        for rule in rollout["experiments"]:
            for variation in rule["variations"]:
                variation["variables"] = []  # every user gets the flag's default value
    provider = XpeventsProvider(Client(datafile, event_dispatcher=recorder))
    details = provider.resolve_object_details("live_chat.hours", {"d": 1}, _ctx("u1"))
    assert details.error_code == ErrorCode.PARSE_ERROR and details.value == {"d": 1}
    provider.shutdown()


def test_the_provider_sends_what_the_client_sends(recorder: RecordingDispatcher) -> None:
    direct = RecordingDispatcher()
    client = Client(example_datafile(), event_dispatcher=direct)
    provider = XpeventsProvider(Client(example_datafile(), event_dispatcher=recorder))
    api.set_provider_and_wait(provider)
    flags = api.get_client()
    for user in USERS[:20]:
        flags.get_boolean_value("new_checkout", False, _ctx(user, country="US"))
        client.decide(user, "new_checkout", {"country": "US"})
        flags.track("purchase", _ctx(user), TrackingEventDetails(value=9.5).add("revenue", 1299))
        client.track("purchase", user, None, {"revenue": 1299, "value": 9.5})
    api.shutdown()
    api.clear_providers()

    def shape(visitors: list[Any]) -> list[Any]:
        out = []
        for v in visitors:
            for s in v["snapshots"]:
                for e in s["events"]:
                    e = {k: val for k, val in e.items() if k not in ("uuid", "timestamp")}
                    out.append((v["visitor_id"], v["attributes"], s.get("decisions"), e))
        return out

    assert shape(recorder.visitors()) == shape(direct.visitors())
    recorder.assert_conversion("purchase", user_id="user-3", revenue=1299)
    assert recorder.conversions()[0].value == 9.5


def test_end_to_end_into_a_collector(collector: CollectorHandle) -> None:
    dispatcher = BatchDispatcher(endpoint=collector.events_url)
    api.set_provider_and_wait(
        XpeventsProvider(datafile=example_datafile(), event_dispatcher=dispatcher)
    )
    flags = api.get_client()
    for user in USERS[:10]:
        flags.get_boolean_value("new_checkout", False, _ctx(user))
        flags.track("signup", _ctx(user))
    api.shutdown()  # closes the client it owns, not the dispatcher
    api.clear_providers()
    dispatcher.flush(10)
    stats = collector.wait_for(unique_events=20, timeout=10)
    assert stats["unique_events"] == 20
    dispatcher.close(5)


def test_events_ready_configuration_changed_and_stale() -> None:
    first = json.loads(example_datafile())
    second = json.loads(example_datafile())
    second["revision"] = str(int(first["revision"]) + 1)
    flag = next(f for f in second["featureFlags"] if f["key"] == "new_checkout")
    flag["variables"][0]["defaultValue"] = "9"
    events: list[tuple[ProviderEvent, EventDetails]] = []
    changed = threading.Event()
    stale = threading.Event()

    def on(kind: ProviderEvent) -> Any:
        def handler(details: EventDetails) -> None:
            events.append((kind, details))
            if kind is ProviderEvent.PROVIDER_CONFIGURATION_CHANGED:
                changed.set()
            if kind is ProviderEvent.PROVIDER_STALE:
                stale.set()

        return handler

    handlers = {kind: on(kind) for kind in ProviderEvent}
    with datafile_server() as server:
        server.publish("K", first)
        manager = PollingConfigManager(
            sdk_key="K", url_template=server.template, update_interval=0.2, blocking_timeout=5
        )
        provider = XpeventsProvider(
            Client(config_manager=manager, event_dispatcher=RecordingDispatcher()),
            stale_check_interval=0.1,
        )
        api.set_provider_and_wait(provider)
        assert api.get_client().get_provider_status() is ProviderStatus.READY
        for kind, handler in handlers.items():
            api.add_handler(kind, handler)  # READY runs at once: our provider is ready
        server.publish("K", second)
        assert changed.wait(10)
        (_, details), *_ = [
            e for e in events if e[0] is ProviderEvent.PROVIDER_CONFIGURATION_CHANGED
        ]
        assert details.flags_changed == ["new_checkout"]
        server.fault = Reply(503)  # the CDN fails: refreshing fails
        assert stale.wait(10)
        for kind, handler in handlers.items():
            api.remove_handler(kind, handler)
        api.shutdown()
        api.clear_providers()
    assert events[0][0] is ProviderEvent.PROVIDER_READY


def test_not_ready_without_a_datafile_then_ready_when_it_comes() -> None:
    with datafile_server() as server:
        manager = PollingConfigManager(
            sdk_key="LATE", url_template=server.template, update_interval=0.1, blocking_timeout=0.2
        )
        provider = XpeventsProvider(
            Client(config_manager=manager, event_dispatcher=RecordingDispatcher()),
            stale_check_interval=None,
        )
        ready = threading.Event()

        def on_ready(details: EventDetails) -> None:
            ready.set()

        api.set_provider(provider)
        flags = api.get_client()
        assert flags.get_provider_status() is ProviderStatus.ERROR
        api.add_handler(ProviderEvent.PROVIDER_READY, on_ready)  # not READY: no immediate call
        details = flags.get_boolean_details("new_checkout", True, _ctx("u1"))
        assert details.value is True and details.error_code is not None
        server.publish("LATE", EXAMPLE)
        assert ready.wait(10)
        assert flags.get_boolean_details("new_checkout", True, _ctx("u1")).error_code is None
        api.remove_handler(ProviderEvent.PROVIDER_READY, on_ready)
        api.shutdown()
        api.clear_providers()


def test_options_are_checked() -> None:
    client = Client(example_datafile(), event_dispatcher=RecordingDispatcher())
    with pytest.raises(ConfigError, match="not both"):
        XpeventsProvider(client, datafile=example_datafile())
    with pytest.raises(ConfigError, match="stale_check_interval"):
        XpeventsProvider(client, stale_check_interval=0)
    assert OptimizelyDecideOption  # the provider decides with the client's defaults
