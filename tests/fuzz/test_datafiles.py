"""Mutated datafiles: ``Client()`` raises only ``DatafileError``, decisions never raise,
and where optimizely-sdk 5.7.0 gives a comparable answer, we accept and refuse alike.

Each example takes one valid datafile (the bundled example, the test fixture, the
parity corpus), picks one place in it and mutates it (see :mod:`fuzz.mutate`). Then:

* ``Client(doc)`` either works or raises :class:`DatafileError` (issue 15, item 7);
* a working client answers ``decide_all``, ``activate``, ``get_variation``,
  ``is_feature_enabled``, ``get_all_feature_variables`` and ``track`` for every key,
  with a normal and a lone-surrogate user id, without raising;
* comparable mutations (delete a field, a value of the same JSON type, an object as a
  variable's ``defaultValue``) get the official SDK's verdict: loaded and usable exactly
  when optimizely-sdk loads it; ``strict=True`` raises exactly when it refuses.

Not comparable, and refused by us with a ``DatafileError`` naming the field: a value of
the wrong JSON type where the official schema does not look (the official SDK loads a
variation whose ``featureEnabled`` is ``"yes"`` and decides with it), lone surrogates
(they crash murmur3), nesting deeper than 200, and what makes the official SDK raise.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import xpevents
from xpevents.errors import DatafileError

from fuzz.mutate import MUTATIONS, mutate, official_accepts, places
from parity.corpus import MAIN

ROOT = Path(__file__).resolve().parents[2]
BASES: list[dict[str, Any]] = [
    json.loads((ROOT / "src/xpevents/example_datafile.json").read_text()),
    json.loads((ROOT / "tests/fixtures/datafile.json").read_text()),
    MAIN,
]
PLACES = [places(base) for base in BASES]
SAME_TYPE = {
    str: ("string", "empty_string", "unknown_type"),
    list: ("empty_list",),
    dict: ("empty_object",),
    int: ("int", "negative"),
    bool: ("bool",),
}
STATS = {"examples": 0, "refused": 0, "compared": 0}


class _Recorder:
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


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """A mutated datafile, and whether the mutation is comparable with the official SDK."""
    index = draw(st.integers(0, len(BASES) - 1))
    base = BASES[index]
    path = draw(st.sampled_from(PLACES[index]))
    old = _at(base, path)
    comparable_kinds = ("delete", *SAME_TYPE.get(type(old), ()))
    if path[-1] in ("defaultValue", "value"):
        comparable_kinds = (*comparable_kinds, "object", "int")
    kind = draw(st.sampled_from(sorted(MUTATIONS)))
    if draw(st.booleans()):
        kind = draw(st.sampled_from(comparable_kinds))
    return mutate(base, path, kind), kind in comparable_kinds


def _exercise(client: xpevents.Client, config: Any) -> None:
    """Every call a host makes; none may raise."""
    for user in ("user-1", "\ud800x"):
        client.decide_all(user, {"$opt_bucketing_id": user})
        for key in config.experiments:
            client.activate(key, user)
            client.get_variation(key, user)
        for key in config.flags:
            client.is_feature_enabled(key, user)
            client.get_all_feature_variables(key, user)
        for key in config.events:
            client.track(key, user, event_tags={"revenue": 1})


@seed(20261202)
@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated())
def test_mutated_datafiles(case: tuple[dict[str, Any], bool]) -> None:
    doc, comparable = case
    STATS["examples"] += 1
    try:
        client = xpevents.Client(doc, event_dispatcher=_Recorder())
    except DatafileError:
        ours = False
        STATS["refused"] += 1
    else:
        with client:
            _exercise(client, client.config)
        ours = client.config.usable
    if not comparable:
        return
    theirs = official_accepts(doc)
    if theirs is None:  # the official SDK raised while loading: nothing to compare
        return
    STATS["compared"] += 1
    assert ours == theirs, f"ours usable={ours}, official accepts={theirs}"
    if not theirs:
        with pytest.raises(DatafileError):
            xpevents.Client(doc, event_dispatcher=_Recorder(), strict=True)


def test_the_campaign_compared_something() -> None:
    """Guard against a strategy that silently stops producing comparable cases."""
    if STATS["examples"] == 0:
        pytest.skip("run with test_mutated_datafiles")
    assert STATS["compared"] >= 20, STATS
    assert STATS["refused"] >= 5, STATS
