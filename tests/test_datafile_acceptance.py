"""Which datafiles are usable: each rule, with optimizely-sdk 5.7.0's verdict beside ours.

Issue 12 (acceptance) and issue 15 item 7 (no datafile content crashes the host).
"""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import xpevents
from xpevents.decide.datafile import load_config
from xpevents.errors import DatafileError

from fuzz.mutate import deep, official_accepts


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(previous)


class _NoDispatch:
    def dispatch_event(self, event: Any) -> None:
        pass


def base() -> dict[str, Any]:
    return {
        "version": "4",
        "accountId": "1",
        "projectId": "2",
        "revision": "3",
        "groups": [],
        "events": [{"id": "ev", "key": "buy", "experimentIds": ["e1"]}],
        "attributes": [],
        "audiences": [],
        "typedAudiences": [
            {
                "id": "a1",
                "name": "fr",
                "conditions": ["or", {"type": "custom_attribute", "name": "c", "value": "FR"}],
            }
        ],
        "experiments": [
            {
                "id": "e1",
                "key": "exp",
                "status": "Running",
                "layerId": "l1",
                "audienceIds": [],
                "forcedVariations": {},
                "variations": [
                    {
                        "id": "v1",
                        "key": "on",
                        "featureEnabled": True,
                        "variables": [{"id": "j", "value": '{"a": 1}'}],
                    }
                ],
                "trafficAllocation": [{"entityId": "v1", "endOfRange": 10000}],
            }
        ],
        "featureFlags": [
            {
                "id": "f1",
                "key": "flag",
                "experimentIds": ["e1"],
                "rolloutId": "",
                "variables": [{"id": "j", "key": "cfg", "type": "json", "defaultValue": "{}"}],
            }
        ],
        "rollouts": [],
    }


def _outcome(doc: dict[str, Any]) -> bool:
    """Ours: usable, not usable, or DatafileError (counted as refused)."""
    try:
        return load_config(doc).usable
    except DatafileError:
        return False


REFUSED_BY_BOTH = {
    "integration without key": lambda d: d.update(integrations=[{"host": "h"}]),
    "missing attributes array": lambda d: d.pop("attributes"),
    "missing groups array": lambda d: d.pop("groups"),
    "legacy audience with object conditions": lambda d: d.update(
        audiences=[{"id": "a9", "name": "n", "conditions": ["or"]}]
    ),
    "unsupported version": lambda d: d.update(version="5"),
    "flag names a missing experiment": lambda d: d["featureFlags"][0].update(
        experimentIds=["nope"]
    ),
    "flag names a missing rollout": lambda d: d["featureFlags"][0].update(rolloutId="nope"),
    "experiment range without endOfRange": lambda d: d["experiments"][0]["trafficAllocation"][
        0
    ].pop("endOfRange"),
    "global holdout without variations": lambda d: d.update(
        holdouts=[
            {"id": "h", "key": "h", "status": "Running", "trafficAllocation": [], "audienceIds": []}
        ]
    ),
}

ACCEPTED_BY_BOTH = {
    "json variable with an object default": lambda d: d["featureFlags"][0]["variables"][0].update(
        defaultValue={"a": 1}
    ),
    "variable of an unknown type": lambda d: d["featureFlags"][0]["variables"][0].update(
        type="decimal"
    ),
    "integer variable with a number default": lambda d: d["featureFlags"][0]["variables"].append(
        {"id": "n", "key": "n", "type": "integer", "defaultValue": 5}
    ),
    "rollout range without entityId or endOfRange": lambda d: (
        d["featureFlags"][0].update(rolloutId="r1"),
        d["rollouts"].append(
            {
                "id": "r1",
                "experiments": [
                    {
                        **copy.deepcopy(d["experiments"][0]),
                        "id": "r1e",
                        "key": "r1e",
                        "trafficAllocation": [{"entityId": "v1"}, {"endOfRange": 10000}],
                    }
                ],
            }
        ),
    ),
    "typed condition whose type is a list": lambda d: d["typedAudiences"][0].update(
        conditions=["or", {"type": [], "name": "c", "value": 1}]
    ),
    "local holdout without includedRules (skipped)": lambda d: d.update(
        localHoldouts=[{"id": "lh"}]
    ),
    "whitelist value that is not a string": lambda d: d["experiments"][0].update(
        forcedVariations={"u": 5}
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED_BY_BOTH))
def test_refused_as_official(name: str) -> None:
    doc = base()
    REFUSED_BY_BOTH[name](doc)
    assert official_accepts(doc) is False
    assert _outcome(doc) is False
    with pytest.raises(DatafileError):
        xpevents.Client(doc, event_dispatcher=_NoDispatch(), strict=True)
    try:  # not strict: loaded as unusable, or refused while decoding
        client = xpevents.Client(doc, event_dispatcher=_NoDispatch())
    except DatafileError:
        return
    assert client.decide("u", "flag").variation_key is None
    assert client.activate("exp", "u") is None


@pytest.mark.parametrize("name", sorted(ACCEPTED_BY_BOTH))
def test_accepted_as_official(name: str) -> None:
    doc = base()
    ACCEPTED_BY_BOTH[name](doc)
    assert official_accepts(doc) is True
    assert _outcome(doc) is True
    with xpevents.Client(doc, event_dispatcher=_NoDispatch(), strict=True) as client:
        client.decide_all("u", {"c": "FR"})


def _official_variables(doc: dict[str, Any]) -> dict[str, Any]:
    from optimizely import optimizely

    opt = optimizely.Optimizely(json.dumps(doc), event_dispatcher=_NoDispatch())
    return dict(opt.create_user_context("u").decide("flag").variables)


@pytest.mark.parametrize(
    ("vtype", "default"),
    [("json", {"a": 1}), ("decimal", "1.5"), ("integer", 5), ("double", 2), ("boolean", True)],
)
def test_variable_fallbacks_as_official(vtype: str, default: Any) -> None:
    doc = base()
    doc["experiments"][0]["variations"][0]["featureEnabled"] = False  # defaults are used
    doc["featureFlags"][0]["variables"][0].update(type=vtype, defaultValue=default)
    with xpevents.Client(doc, event_dispatcher=_NoDispatch()) as client:
        ours = dict(client.decide("u", "flag").variables)
    assert ours == _official_variables(doc)


@pytest.mark.parametrize(
    "mutation",
    ["surrogate id", "surrogate key", "deep audience", "deep typed audience", "deep unknown"],
)
def test_hostile_content_is_a_datafile_error(mutation: str) -> None:
    doc = base()
    if mutation == "surrogate id":
        doc["experiments"][0]["id"] = "\ud800"
    elif mutation == "surrogate key":
        doc["experiments"][0]["forcedVariations"] = {"\udfff": "on"}
    elif mutation == "deep audience":
        doc["experiments"][0]["audienceConditions"] = deep(300)
    elif mutation == "deep typed audience":
        doc["typedAudiences"][0]["conditions"] = deep(300)
    else:
        doc["unknown"] = deep(5000)
    with pytest.raises(DatafileError):
        xpevents.Client(doc, event_dispatcher=_NoDispatch())
    if mutation == "deep unknown":  # too deep for json.dumps too: write the text by hand
        doc["unknown"] = []
        text = json.dumps(doc).replace('"unknown": []', '"unknown": ' + "[" * 5000 + "]" * 5000)
    else:
        text = json.dumps(doc)
    with pytest.raises(DatafileError):  # the same text gets the same answer
        xpevents.Client(text, event_dispatcher=_NoDispatch())


def test_a_lone_surrogate_user_id_does_not_crash_the_process() -> None:
    """murmur3 dies with SIGSEGV on such a str: bucketing hashes its bytes instead."""
    script = (
        "import json, sys, xpevents\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_datafile_acceptance import base, _NoDispatch\n"
        "c = xpevents.Client(base(), event_dispatcher=_NoDispatch())\n"
        "print(c.activate('exp', '\\ud800'), c.decide('\\udfff', 'flag').variation_key)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["on", "on"]
