"""Visitors written straight to bytes (events/wire.py) equal the dict path byte for byte.

The builder keeps its dict path (``impression_visitor`` / ``conversion_visitor``) as the
oracle: for any decision, attributes, tags and visitor id, the bytes our client hands
its dispatcher are msgspec's encoding of the dict the dict path builds with the same
uuid and timestamp. Also: ``params`` of an encoded event, pickling, replacing
``params``, values msgspec cannot write, and a fork that bypasses Python's hooks.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import sys
from importlib import resources
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xpevents import BatchDispatcher, Client, LogEvent
from xpevents.decide.datafile import load_config
from xpevents.events.builder import EventBuilder
from xpevents.events.wire import EncodedEvent
from xpevents.testing import CollectorHandle

from servers import scripted_server

DATAFILE = resources.files("xpevents").joinpath("example_datafile.json").read_text()
CONFIG = load_config(DATAFILE)
BUILDER = EventBuilder(CONFIG)
encode = msgspec.json.encode

attribute_values = st.one_of(
    st.text(max_size=12),
    st.booleans(),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
attribute_keys = st.one_of(
    st.sampled_from([*CONFIG.attributes, "$opt_user_agent", "$opt_x", "unknown"]),
    st.text(max_size=6),
    st.integers(),
)
attributes = st.one_of(
    st.none(), st.dictionaries(attribute_keys, attribute_values, max_size=5), st.just([])
)
user_ids = st.text(max_size=20)
json_scalars = st.one_of(
    st.text(max_size=8),
    st.integers(min_value=-(2**62), max_value=2**62),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
tags = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["revenue", "value", "tags", "decisions", "color", "n"]),
        st.one_of(json_scalars, st.lists(json_scalars, max_size=2)),
        max_size=4,
    ),
)


def _stamped(visitor: dict[str, Any], wire: bytes) -> dict[str, Any]:
    """The dict-path visitor with the wire's uuid and timestamp (the two random parts)."""
    sent = json.loads(wire)["snapshots"][0]["events"][0]
    event = visitor["snapshots"][0]["events"][0]
    event["uuid"], event["timestamp"] = sent["uuid"], sent["timestamp"]
    return visitor


def _decisions() -> list[tuple[Any, ...]]:
    """(experiment, variation, flag_key, rule_key, rule_type, enabled) from the datafile."""
    out: list[tuple[Any, ...]] = [(None, None, "new_checkout", "", "rollout", False)]
    for experiment in CONFIG.experiments.values():
        for variation in experiment.variations:
            out.append((experiment, variation, "", experiment.key, "experiment", True))
            out.append((experiment, variation, "flag", experiment.key, "feature-test", False))
        out.append((experiment, None, "flag", experiment.key, "rollout", True))
    return out


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_decisions()), user_ids, attributes)
def test_impression_bytes_are_the_dict_paths(
    decision: tuple[Any, ...], user_id: str, attrs: Any
) -> None:
    experiment, variation, flag_key, rule_key, rule_type, enabled = decision
    event = BUILDER.impression(
        experiment,
        variation,
        user_id,
        attrs,
        flag_key=flag_key,
        rule_key=rule_key,
        rule_type=rule_type,
        enabled=enabled,
    )
    assert type(event) is EncodedEvent and event.wire is not None
    wire = event.wire
    visitor = BUILDER.impression_visitor(
        experiment,
        variation,
        user_id,
        attrs,
        flag_key=flag_key,
        rule_key=rule_key,
        rule_type=rule_type,
        enabled=enabled,
    )
    assert wire == encode(_stamped(visitor, wire))
    assert event.params == BUILDER.payload([visitor])  # decoded from the bytes
    assert event.wire is None  # read: dispatchers now take the dict


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(CONFIG.events.values())), user_ids, attributes, tags)
def test_conversion_bytes_are_the_dict_paths(
    event_def: Any, user_id: str, attrs: Any, event_tags: Any
) -> None:
    event = BUILDER.conversion(event_def, user_id, attrs, event_tags)
    assert type(event) is EncodedEvent and event.wire is not None
    wire = event.wire
    visitor = BUILDER.conversion_visitor(event_def, user_id, attrs, event_tags)
    assert wire == encode(_stamped(visitor, wire))
    assert event.params == BUILDER.payload([visitor])


def test_params_is_one_dict_and_a_change_to_it_is_what_is_sent() -> None:
    event = BUILDER.conversion(next(iter(CONFIG.events.values())), "u1", None, {"n": 1})
    params = event.params
    assert event.params is params
    params["visitors"][0]["visitor_id"] = "changed"
    copied = copy.deepcopy(event)
    assert type(copied) is LogEvent and copied == event
    restored = pickle.loads(pickle.dumps(event))
    assert type(restored) is LogEvent
    assert restored.params["visitors"][0]["visitor_id"] == "changed"


def test_replacing_params_drops_the_bytes() -> None:
    event = BUILDER.conversion(next(iter(CONFIG.events.values())), "u1")
    assert event.wire is not None
    event.params = {"replaced": True}
    assert event.wire is None and event.params == {"replaced": True}
    assert event.headers == {"Content-Type": "application/json"}
    assert event.headers is event.headers
    event.headers = {"X": "1"}
    assert pickle.loads(pickle.dumps(event)).headers == {"X": "1"}


def test_unencodable_visitor_id_goes_the_dict_way_and_is_counted() -> None:
    event = BUILDER.conversion(next(iter(CONFIG.events.values())), "lone \ud800 surrogate")
    assert type(event) is LogEvent  # msgspec cannot write it: the dict path
    dispatcher = BatchDispatcher(endpoint="http://127.0.0.1:9", atexit_timeout=None)
    try:
        dispatcher.dispatch_event(event)
        assert dispatcher.stats().dropped == {"serialize": 1}
    finally:
        dispatcher.close(timeout=0)


def test_client_visitors_reach_the_endpoint_byte_for_byte() -> None:
    wires: list[bytes] = []

    class Recording(BatchDispatcher):
        def dispatch_event(self, event: Any) -> None:
            assert type(event) is EncodedEvent and event.wire is not None
            wires.append(event.wire)
            super().dispatch_event(event)

    with scripted_server() as server:
        dispatcher = Recording(endpoint=server.base_url, flush_interval=0.05)
        client = Client(DATAFILE, event_dispatcher=dispatcher)
        for i in range(20):
            client.activate("checkout_button_color", f"user-{i}", {"country": "US"})
            client.track("purchase", f"user-{i}", None, {"revenue": 100, "n": 1.5})
        assert dispatcher.flush(10).pending == 0
        client.close()
        bodies = b"\n".join(r.body for r in server.received)
    assert len(wires) == 40
    assert all(wire in bodies for wire in wires)  # wrapped, never re-encoded
    sent = [v for r in server.received for v in json.loads(r.body)["visitors"]]
    assert sorted(map(encode, sent)) == sorted(wires)


HOOKLESS_CHILD = """
import ctypes, os, sys, time
from importlib import resources
from xpevents import BatchDispatcher, Client
datafile = resources.files("xpevents").joinpath("example_datafile.json").read_text()
dispatcher = BatchDispatcher(endpoint=sys.argv[1], flush_interval=0.05)
client = Client(datafile, event_dispatcher=dispatcher)
client.activate("checkout_button_color", "parent-0", None)  # senders running, ids drawn
assert dispatcher.flush(10).pending == 0
pid = ctypes.CDLL(None).fork()  # libc's fork: Python's at-fork hooks do not run
if pid == 0:
    code = 3
    try:
        for i in range(30):
            client.activate("checkout_button_color", f"child-{i}", None)
        outcome = dispatcher.flush(10)
        code = 0 if outcome.pending == 0 and dispatcher.stats().delivered == 30 else 2
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
for i in range(1, 30):
    client.activate("checkout_button_color", f"parent-{i}", None)
assert dispatcher.flush(10).pending == 0
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="calls glibc's fork() through ctypes")
def test_fork_without_python_hooks_is_caught_by_the_id_generator(
    collector: CollectorHandle, tmp_path: Any
) -> None:
    """uWSGI without py-call-uwsgi-fork-hooks forks from C: nothing of ours is reset by
    Python. The first event built in the child notices the new pid, resets the registry
    (new uuid prefix, fresh dispatcher with its own senders) and goes out from there."""
    import subprocess

    script = tmp_path / "hookless.py"
    script.write_text(HOOKLESS_CHILD)
    result = subprocess.run(
        [sys.executable, str(script), collector.base_url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    stats = collector.wait_for(unique_events=60, timeout=10)
    assert stats["unique_events"] == 60 and stats["duplicates"] == 0
    ids = [e["visitor_id"] for e in collector.events(limit=100)]
    assert sum(v.startswith("child-") for v in ids) == 30
    uuids = {e["uuid"] for e in collector.events(limit=100)}
    assert len(uuids) == 60


def _writer_for(builder: EventBuilder) -> Any:
    return builder._writer


def test_attribute_cache_keeps_equal_but_different_values_apart() -> None:
    """1, 1.0 and True are one dict key but three JSON values: only all-string dicts
    are remembered, so a cached string never answers for them (and vice versa)."""
    builder = EventBuilder(CONFIG)
    writer = _writer_for(builder)
    key = next(iter(CONFIG.attributes))
    for _ in range(3):  # the second and third rounds read whatever was cached
        for value in ["1", 1, 1.0, True, "True", "true"]:
            got = writer.attributes({key: value})
            assert got == encode(builder.visitor_attributes({key: value})), value
    assert list(writer._attribute_cache.known) == [
        ((key, "1"),),
        ((key, "True"),),
        ((key, "true"),),
    ]


def test_attribute_cache_survives_unhashable_and_hostile_values() -> None:
    class Hostile:
        def __hash__(self) -> int:
            raise RuntimeError("no hash for you")

    builder = EventBuilder(CONFIG)
    writer = _writer_for(builder)
    key = next(iter(CONFIG.attributes))
    for value in [[1, 2], {"a": 1}, Hostile()]:
        assert writer.attributes({key: value}) == encode(builder.visitor_attributes({key: value}))


def test_attribute_cache_turns_itself_off_for_per_user_values() -> None:
    builder = EventBuilder(CONFIG)
    writer = _writer_for(builder)
    cache = writer._attribute_cache
    key = next(iter(CONFIG.attributes))
    for i in range(cache.size + 10):  # an attribute unique per user: every lookup misses
        attributes = {key: f"user-{i}@example.com"}
        assert writer.attributes(attributes) == encode(builder.visitor_attributes(attributes))
    assert not cache.on and not cache.known
    assert writer.attributes({key: "x"}) == encode(builder.visitor_attributes({key: "x"}))


def test_attribute_cache_stays_on_for_a_few_combinations() -> None:
    builder = EventBuilder(CONFIG)
    writer = _writer_for(builder)
    cache = writer._attribute_cache
    key = next(iter(CONFIG.attributes))
    for i in range(cache.size * 5):
        attributes = {key: ("US", "DE", "FR")[i % 3]}
        assert writer.attributes(attributes) == encode(builder.visitor_attributes(attributes))
    assert cache.on and len(cache.known) == 3
