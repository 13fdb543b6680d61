"""Audience conditions: match types, three-valued trees, semver."""

from __future__ import annotations

from typing import Any

import pytest
from optimizely.helpers.condition import CustomAttributeConditionEvaluator

from xpevents.decide.audiences import compile_audience_check, compile_conditions
from xpevents.decide.semver import compare_versions


def leaf(match: str | None, value: Any, name: str = "x", ctype: str = "custom_attribute") -> Any:
    cond = {"name": name, "type": ctype, "value": value}
    if match is not None:
        cond["match"] = match
    return compile_conditions(cond)


@pytest.mark.parametrize(
    ("match", "value", "attrs", "expected"),
    [
        ("exact", "US", {"x": "US"}, True),
        ("exact", "US", {"x": "us"}, False),
        ("exact", "US", {"x": 1}, None),
        ("exact", "US", {}, None),
        ("exact", "US", {"x": None}, None),
        (None, "US", {"x": "US"}, True),
        ("exact", 18, {"x": 18.0}, True),
        ("exact", 18, {"x": True}, None),
        ("exact", True, {"x": 1}, None),
        ("exact", True, {"x": True}, True),
        ("exact", 2**53 + 1, {"x": 2**53 + 1}, None),
        ("exact", 1, {"x": float("nan")}, None),
        ("exists", None, {"x": 0}, True),
        ("exists", None, {"x": None}, False),
        ("exists", None, {}, False),
        ("substring", "S", {"x": "US"}, True),
        ("substring", "S", {"x": 5}, None),
        ("gt", 17, {"x": 18}, True),
        ("gt", 17, {"x": 17}, False),
        ("ge", 17, {"x": 17}, True),
        ("lt", 17, {"x": 16.5}, True),
        ("le", 17, {"x": 17.5}, False),
        ("gt", 17, {"x": "18"}, None),
        ("gt", 17, {"x": True}, None),
        ("gt", 17, {"x": float("inf")}, None),
        ("gt", 17, {"x": 2**53 + 1}, None),
        ("gt", 17, {"x": 2**53}, True),
        ("gt", "17", {"x": 18}, None),
        ("qualified", "seg", {}, False),
        ("bogus", "US", {"x": "US"}, None),
        ("semver_ge", "1.2.3", {"x": "1.2.3"}, True),
        ("semver_lt", "1.2.3", {"x": "1.2.3-beta"}, True),
        ("semver_eq", "1.2", {"x": "1.2.9"}, True),
        ("semver_eq", "1.2.3", {"x": " 1.2.3"}, None),
        ("semver_eq", "1.2.3", {"x": 1}, None),
    ],
)
def test_match_types(match: str | None, value: Any, attrs: dict, expected: bool | None) -> None:
    assert leaf(match, value)(attrs) is expected


def test_condition_types() -> None:
    assert leaf("exact", "US", ctype="third_party_dimension")({"x": "US"}) is True
    assert leaf("exact", "US", ctype="other")({"x": "US"}) is None


def test_trees_are_three_valued() -> None:
    t, f, u = (
        {"name": "a", "type": "custom_attribute", "match": "exists"},
        {"name": "zz", "type": "custom_attribute", "match": "exists"},
        {"name": "a", "type": "custom_attribute", "match": "gt", "value": 1},
    )
    attrs = {"a": "s"}  # t True, f False, u unknown (not a number)
    assert compile_conditions(["and", t, u])(attrs) is None
    assert compile_conditions(["and", f, u])(attrs) is False
    assert compile_conditions(["or", t, u])(attrs) is True
    assert compile_conditions(["or", f, u])(attrs) is None
    assert compile_conditions([f, t])(attrs) is True  # bare list is "or"
    assert compile_conditions(["not", u])(attrs) is None
    assert compile_conditions(["not", f])(attrs) is True
    assert compile_conditions(["not"])(attrs) is None
    assert compile_conditions(t)(attrs) is True


def test_experiment_audience_check() -> None:
    yes = compile_conditions({"name": "a", "type": "custom_attribute", "match": "exists"})
    audiences = {"1": yes}
    assert compile_audience_check(None, audiences) is None
    assert compile_audience_check([], audiences) is None
    check = compile_audience_check(["or", "1", "404"], audiences)
    assert check is not None and check({"a": 1}) and not check({})
    only_missing = compile_audience_check(["404"], audiences)
    assert only_missing is not None and not only_missing({"a": 1})
    negated = compile_audience_check(["not", "404"], audiences)
    assert negated is not None and not negated({"a": 1})  # unknown is not admitted


@pytest.mark.parametrize(
    ("target", "user", "expected"),
    [
        ("1.2.3", "1.2.3", 0),
        ("1.2.3", "1.2.4", 1),
        ("1.2.3", "1.2.2", -1),
        ("1.2.3", "1.10.0", 1),
        ("1.2", "1.2.3", 0),
        ("1.2.3", "1.2", -1),
        ("1.2.3-beta", "1.2", 1),
        ("1.2.3", "1.2.3-beta", -1),
        ("1.2.3-beta", "1.2.3-beta", 0),
        ("1.2.3-beta", "1.2.3-alpha", -1),
        ("1.2.3-beta", "1.2.3", 1),
        ("1.2.3+build", "1.2.3", 1),
        ("1.2.3", "1.2.3+build", 0),
        ("1.2.3", " 1.2.3", None),
        ("1.2.3", "1.2.3.4", None),
        ("1.2.3", "a.b.c", None),
        ("1.2.3", "", None),
        ("1..2", "1.2", None),
        ("1.2.3-beta", "1.2.3-4", None),  # the official SDK raises here
    ],
)
def test_compare_versions(target: str, user: str, expected: int | None) -> None:
    assert compare_versions(target, user) == expected
    if expected is not None:  # the expectations are the official SDK's answers
        official = CustomAttributeConditionEvaluator.__new__(CustomAttributeConditionEvaluator)
        assert official.compare_user_version_with_target_version(target, user) == expected
