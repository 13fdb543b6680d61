"""client.get_optimizely_config() vs the official optimizely-sdk 5.7.0, attribute by
attribute, on the fixture datafiles, the hand-picked corpus and generated datafiles."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from optimizely import optimizely
from optimizely.event.event_processor import ForwardingEventProcessor
from optimizely.helpers.sdk_settings import OptimizelySdkSettings

import xpevents
from xpevents import Client
from xpevents.client.optimizely_config import describe_conditions

from parity.corpus import BOUNDARY, MAIN
from parity.strategies import datafiles

EXAMPLES = int(os.environ.get("XPEVENTS_PARITY_EXAMPLES", "60"))
FIXTURES = Path(__file__).parent.parent / "fixtures"


class _NoDispatch:
    def dispatch_event(self, event: Any) -> None:
        pass


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(previous)


def plain(value: Any) -> Any:
    """An OptimizelyConfig object tree as plain data (ours: dataclasses; theirs: objects)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: plain(getattr(value, k)) for k in value.__dataclass_fields__}
    if hasattr(value, "__dict__"):
        return {k: plain(v) for k, v in vars(value).items() if k != "logger"}
    return value


def compare(datafile: dict[str, Any]) -> None:
    text = json.dumps(datafile)
    theirs = optimizely.Optimizely(
        text,
        event_dispatcher=_NoDispatch(),
        skip_json_validation=True,
        event_processor=ForwardingEventProcessor(_NoDispatch()),
        settings=OptimizelySdkSettings(odp_disabled=True),
    )
    official = theirs.get_optimizely_config()
    theirs.close()
    with Client(text, event_dispatcher=_NoDispatch()) as client:
        ours = client.get_optimizely_config()
    if official is None:
        assert ours is None or not client.is_valid
        return
    assert ours is not None
    assert ours.get_datafile() == official.get_datafile() == text
    assert plain(ours) == plain(official)


def fixture_datafiles() -> list[tuple[str, dict[str, Any]]]:
    example = Path(xpevents.__file__).parent / "example_datafile.json"
    return [
        (path.name, json.loads(path.read_text())) for path in (FIXTURES / "datafile.json", example)
    ]


@pytest.mark.parametrize(("name", "datafile"), fixture_datafiles(), ids=lambda v: str(v)[:40])
def test_the_fixture_datafiles(name: str, datafile: dict[str, Any]) -> None:
    compare(datafile)


@pytest.mark.parametrize("datafile", [MAIN, BOUNDARY], ids=["corpus-main", "corpus-boundary"])
def test_the_corpus_datafiles(datafile: dict[str, Any]) -> None:
    compare(datafile)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
@given(datafile=datafiles())
def test_generated_datafiles(datafile: dict[str, Any]) -> None:
    compare(datafile)


@pytest.mark.parametrize(
    "conditions",
    [
        [],
        ["1"],
        ["or"],
        ["not", "1"],
        ["and", "1"],
        ["or", "1", "2"],
        ["and", "1", "2", "3"],
        ["or", ["and", "1", "2"], "3"],
        ["and", "1", ["or", "2", ["not", "3"]]],
        [["or", "1", "2"]],
        ["or", "or", "1"],
        ["and", "missing", "2"],
    ],
)
def test_conditions_are_written_out_as_the_official_sdk_writes_them(conditions: list[Any]) -> None:
    from optimizely.optimizely_config import OptimizelyConfigService

    service = OptimizelyConfigService.__new__(OptimizelyConfigService)
    names = {"1": "one", "2": "two", "3": ""}
    try:
        expected = service.stringify_conditions(conditions, names)
    except TypeError:  # the official SDK raises on a lone nested list; we answer
        assert isinstance(describe_conditions(conditions, names), str)
        return
    assert describe_conditions(conditions, names) == expected


def test_before_the_first_datafile_it_is_none() -> None:
    from xpevents.config import StaticConfigManager
    from xpevents.decide.datafile import load_config

    data = json.loads((FIXTURES / "datafile.json").read_text())
    manager = StaticConfigManager(load_config(data))  # no text given
    with Client(config_manager=manager, event_dispatcher=_NoDispatch()) as client:
        assert client.get_optimizely_config() is None  # logged: the manager has no text
