"""Datafile loading: inputs, error paths, warnings, indexes."""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import pytest

from xpevents.decide.datafile import ProjectConfig, load_config
from xpevents.errors import DatafileError, XpeventsError


def minimal(**extra: Any) -> dict[str, Any]:
    datafile: dict[str, Any] = {
        "version": "4",
        "accountId": "1",
        "projectId": "2",
        "revision": "3",
        # the five arrays the official schema requires
        "groups": [],
        "events": [],
        "audiences": [],
        "attributes": [],
        "experiments": [
            {
                "id": "e1",
                "key": "exp",
                "status": "Running",
                "layerId": "l1",
                "audienceIds": [],
                "forcedVariations": {},
                "variations": [{"id": "v1", "key": "a", "featureEnabled": True}],
                "trafficAllocation": [{"entityId": "v1", "endOfRange": 10000}],
            }
        ],
    }
    datafile.update(extra)
    return datafile


def test_loads_str_bytes_and_dict_alike(datafile_text: str) -> None:
    a = load_config(datafile_text)
    b = load_config(datafile_text.encode())
    c = load_config(json.loads(datafile_text))
    for other in (b, c):
        assert other.revision == a.revision
        assert other.experiments.keys() == a.experiments.keys()
        assert other.flags == a.flags
        assert other.rollouts.keys() == a.rollouts.keys()
    assert isinstance(a, ProjectConfig)
    assert a.warnings == ()
    assert a.usable


def test_fixture_indexes(datafile_text: str) -> None:
    config = load_config(datafile_text)
    assert config.account_id == "10367498574"
    assert config.anonymize_ip is True
    assert config.region == "US"
    exp = config.experiments["checkout_button_color"]
    assert config.experiments_by_id[exp.id] is exp
    assert exp.is_running
    for rollout in config.rollouts.values():
        for rule in rollout.experiments:
            assert rule.id in config.experiments_by_id
    for group in config.groups.values():
        for member in group.experiments:
            assert member.group_id == group.id
            assert config.experiments[member.key] is member
    assert set(config.audiences) >= {"20410000001", "20410000101"}


def test_read_only_views() -> None:
    config = load_config(minimal())
    with pytest.raises(TypeError):
        config.experiments["x"] = config.experiments["exp"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        config.revision = "9"  # type: ignore[misc]
    exp = config.experiments["exp"]
    assert isinstance(exp.variations, tuple)
    with pytest.raises(TypeError):
        exp.variations_by_key["b"] = exp.variations[0]  # type: ignore[index]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["experiments"][0]["trafficAllocation"][0].__setitem__("endOfRange", "1"),
            "$.experiments[0].trafficAllocation[0].endOfRange: expected int, got str",
        ),
        (
            lambda d: d["experiments"][0].pop("layerId"),
            "$.experiments[0].layerId: missing required field",
        ),
        (lambda d: d.pop("revision"), "$.revision: missing required field"),
        (
            lambda d: d["experiments"][0]["variations"][0].__setitem__("id", 5),
            "$.experiments[0].variations[0].id: expected str, got int",
        ),
        (lambda d: d.__setitem__("experiments", {}), "$.experiments: expected array, got object"),
    ],
)
def test_errors_name_the_json_path(mutate: Any, message: str) -> None:
    datafile = copy.deepcopy(minimal())
    mutate(datafile)
    for form in (datafile, json.dumps(datafile)):
        with pytest.raises(DatafileError) as info:
            load_config(form)
        assert str(info.value) == message


def test_invalid_json_and_wrong_types() -> None:
    with pytest.raises(DatafileError, match=r"^\$: invalid JSON"):
        load_config("{not json")
    with pytest.raises(DatafileError, match=r"^\$: expected object, got array"):
        load_config("[1, 2]")
    with pytest.raises(DatafileError, match="got int"):
        load_config(42)  # type: ignore[arg-type]
    err = DatafileError("x")
    assert isinstance(err, XpeventsError) and isinstance(err, ValueError)


def test_invalid_legacy_conditions_json_is_an_error() -> None:
    datafile = minimal(audiences=[{"id": "a", "name": "n", "conditions": "[oops"}])
    with pytest.raises(DatafileError, match=r"^\$\.audiences\[0\]\.conditions: invalid JSON"):
        load_config(datafile)


def test_unknown_fields_are_ignored() -> None:
    datafile = minimal(integrations=[{"key": "odp", "x": 1}], region="EU", anything=[{"x": 1}])
    datafile["experiments"][0]["cmab"] = {"trafficAllocation": 5}
    config = load_config(datafile)
    assert config.region == "EU"
    assert config.warnings == ()


def test_dangling_references_are_warnings(caplog: pytest.LogCaptureFixture) -> None:
    datafile = minimal()
    exp = datafile["experiments"][0]
    exp["trafficAllocation"].insert(0, {"entityId": "nope", "endOfRange": 100})
    exp["audienceIds"] = ["missing-audience"]
    exp["forcedVariations"] = {"u": "no-key"}
    datafile["groups"] = [
        {
            "id": "g",
            "policy": "random",
            "experiments": [],
            "trafficAllocation": [{"entityId": "ghost", "endOfRange": 10000}],
        }
    ]
    with caplog.at_level(logging.WARNING, logger="xpevents.datafile"):
        config = load_config(datafile)
    assert config.usable
    assert len(config.warnings) == 4
    joined = "\n".join(config.warnings)
    assert "$.experiments[0].trafficAllocation[0].entityId" in joined
    assert "missing-audience" in joined
    assert "$.groups[0].trafficAllocation[0].entityId" in joined
    assert "no-key" in joined
    assert len(caplog.records) == 4


def test_unsupported_version_and_dangling_flag_refs_make_config_unusable() -> None:
    config = load_config(minimal(version="5"))
    assert not config.usable
    assert "unsupported datafile version '5'" in config.warnings[0]
    flags = [{"id": "f", "key": "flag", "experimentIds": ["zz"], "rolloutId": "r", "variables": []}]
    config = load_config(minimal(featureFlags=flags))
    assert not config.usable
    assert len(config.warnings) == 2


def test_typed_audiences_override_legacy_and_json_variables() -> None:
    datafile = minimal(
        audiences=[{"id": "a", "name": "legacy", "conditions": '["or"]'}],
        typedAudiences=[{"id": "a", "name": "typed", "conditions": ["or", {"name": "x"}]}],
        featureFlags=[
            {
                "id": "f",
                "key": "flag",
                "experimentIds": ["e1"],
                "rolloutId": "",
                "variables": [
                    {
                        "id": "j",
                        "key": "j",
                        "type": "string",
                        "subType": "json",
                        "defaultValue": "{}",
                    }
                ],
            }
        ],
    )
    config = load_config(datafile)
    assert config.audiences["a"].name == "typed"
    assert config.flags["flag"].variables["j"].type == "json"
    assert config.is_feature_experiment("e1")
    assert [r.key for r in config.flag_rules(config.flags["flag"])] == ["exp"]
