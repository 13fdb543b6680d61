"""Audience condition trees, compiled once at datafile load.

Two kinds of tree exist in a datafile:

* an **audience's own conditions** (``audiences[].conditions``, a JSON string, or
  ``typedAudiences[].conditions``, an already-parsed list): ``and`` / ``or`` / ``not``
  nodes whose leaves are condition objects
  (``{"name", "type", "match", "value"}``);
* an **experiment's** ``audienceConditions`` (or, when absent, its ``audienceIds``):
  the same operators, whose leaves are audience ids.

Both are compiled into small closures that take the user's attributes and return the
official SDK's three-valued answer: ``True``, ``False`` or ``None`` (unknown). The
semantics are those of optimizely-sdk 5.7.0:

* a list whose first element is not ``"and"``, ``"or"`` or ``"not"`` is an ``or`` of
  all its elements; ``and`` is ``False`` if any operand is ``False``, else ``None`` if
  any is unknown, else ``True``; ``or`` mirrors it; ``not`` negates its first operand
  (``None`` stays ``None``; an empty ``not`` is ``None``);
* a condition's ``type`` must be ``custom_attribute`` (the official SDK also accepts
  ``third_party_dimension``; so do we), otherwise the leaf is unknown; a missing
  ``match`` means ``exact``; an unknown ``match`` is unknown;
* except for ``exists`` and ``qualified``, a leaf is unknown when the attribute is
  missing or ``None``;
* numbers are ``int``/``float`` but never ``bool``; a number that is NaN, infinite or
  whose absolute value exceeds 2**53 is unknown, on either side;
* ``qualified`` (ODP segments) is ``False`` for a string value (we have no segments)
  and unknown otherwise.

An experiment whose conditions evaluate to unknown does not admit the user.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, Final

logger = logging.getLogger("xpevents.audiences")

__all__ = [
    "CONDITION_TYPES",
    "MATCH_TYPES",
    "AttributePredicate",
    "AudienceCheck",
    "compare_versions",
    "compile_audience_check",
    "compile_condition",
    "compile_conditions",
    "parse_version",
]

AttributePredicate = Callable[[Mapping[str, Any]], bool | None]
"""A compiled tree: attributes -> True / False / None (unknown)."""

AudienceCheck = Callable[[Mapping[str, Any]], bool]
"""A compiled experiment audience check: attributes -> admitted or not."""

CONDITION_TYPES: Final = frozenset({"custom_attribute", "third_party_dimension"})
MATCH_TYPES: Final = frozenset(
    {
        "exact",
        "exists",
        "substring",
        "gt",
        "ge",
        "lt",
        "le",
        "semver_eq",
        "semver_lt",
        "semver_le",
        "semver_gt",
        "semver_ge",
        "qualified",
    }
)
_OPERATORS: Final = ("and", "or", "not")
_MAX_NUMBER: Final = 2**53


def _unknown(attributes: Mapping[str, Any]) -> bool | None:
    return None


def _is_number(value: Any) -> bool:
    """True for int/float (and other integral numbers) but not bool."""
    t = type(value)
    if t is int or t is float:
        return True
    if t is bool:
        return False
    return isinstance(value, numbers.Integral | float) and not isinstance(value, bool)


def _is_finite_number(value: Any) -> bool:
    """A number (not bool) that is finite and within +/- 2**53."""
    if not _is_number(value):
        return False
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return False
    return bool(abs(value) <= _MAX_NUMBER)


# --------------------------------------------------------------------------- semver


def _is_pre_release(version: str) -> bool:
    dash = version.find("-")
    if dash < 0:
        return False
    plus = version.find("+")
    return plus < 0 or dash < plus


def _is_build(version: str) -> bool:
    plus = version.find("+")
    if plus < 0:
        return False
    dash = version.find("-")
    return dash < 0 or plus < dash


@lru_cache(maxsize=4096)
def parse_version(version: str) -> tuple[tuple[str, ...], bool, bool] | None:
    """Split a version the way the official SDK does.

    Returns ``(parts, is_pre_release, is_build)`` or ``None`` when the version is
    invalid: it contains a space, has more than three dot-separated numeric parts
    before the ``-``/``+`` suffix, or one of them is not all digits. The suffix after
    the first ``-`` (pre-release) or ``+`` (build), whichever comes first, becomes one
    extra part.
    """
    if " " in version:
        return None
    pre = _is_pre_release(version)
    build = _is_build(version)
    prefix = version
    suffix: list[str] = []
    if pre or build:
        head, _, tail = version.partition("-" if pre else "+")
        prefix = head
        suffix = [tail]
    if prefix.count(".") > 2:
        return None
    parts = prefix.split(".")
    for part in parts:
        if not part.isdigit():
            return None
    return (*parts, *suffix), pre, build


def compare_versions(target: str, user: str) -> int | None:
    """Compare a user version with a condition's target version.

    Returns 0 (equal), 1 (user is greater), -1 (user is smaller) or ``None`` when
    either version is invalid or the parts cannot be compared. Only the target's
    parts are walked: ``"1.2"`` equals ``"1.2.9"``. A pre-release user version is
    smaller than the same release target.
    """
    parsed_target = parse_version(target)
    if parsed_target is None:
        return None
    parsed_user = parse_version(user)
    if parsed_user is None:
        return None
    target_parts, target_pre, target_build = parsed_target
    user_parts, user_pre, _ = parsed_user
    n_user = len(user_parts)
    for idx, target_part in enumerate(target_parts):
        if idx >= n_user:
            return 1 if (target_pre or target_build) else -1
        user_part = user_parts[idx]
        if not user_part.isdigit():
            if user_part < target_part:
                return 1 if (target_pre and not user_pre) else -1
            if user_part > target_part:
                return -1 if (not target_pre and user_pre) else 1
            continue
        try:
            user_number = int(user_part)
            target_number = int(target_part)
        except ValueError:
            # The official SDK raises here (a numeric user part against a textual
            # target part); we answer "unknown" instead of failing the decision.
            return None
        if user_number > target_number:
            return 1
        if user_number < target_number:
            return -1
    if user_pre and not target_pre:
        return -1
    return 0


# --------------------------------------------------------------------------- leaves


def _present(name: Any, attributes: Mapping[str, Any]) -> Any:
    try:
        return attributes.get(name)
    except TypeError:  # unhashable condition name
        return None


def compile_condition(condition: Any) -> AttributePredicate:
    """Compile one leaf condition object into a predicate."""
    if not isinstance(condition, Mapping):
        return _unknown
    if condition.get("type") not in CONDITION_TYPES:
        return _unknown
    match = condition.get("match")
    if match is None:
        match = "exact"
    if not isinstance(match, str) or match not in MATCH_TYPES:
        return _unknown
    name = condition.get("name")
    value = condition.get("value")

    if match == "exists":

        def exists(attributes: Mapping[str, Any]) -> bool | None:
            return _present(name, attributes) is not None

        return exists

    if match == "qualified":
        result: bool | None = False if isinstance(value, str) else None

        def qualified(attributes: Mapping[str, Any]) -> bool | None:
            return result

        return qualified

    if match == "exact":
        return _compile_exact(name, value)
    if match in ("gt", "ge", "lt", "le"):
        return _compile_numeric(name, value, match)
    if match == "substring":
        if not isinstance(value, str):
            return _unknown
        needle = value

        def substring(attributes: Mapping[str, Any]) -> bool | None:
            user = _present(name, attributes)
            if isinstance(user, str):
                return needle in user
            return None

        return substring
    return _compile_semver(name, value, match)


def _compile_exact(name: Any, value: Any) -> AttributePredicate:
    if isinstance(value, str):
        target_str = value

        def exact_str(attributes: Mapping[str, Any]) -> bool | None:
            user = _present(name, attributes)
            if isinstance(user, str):
                return user == target_str
            return None

        return exact_str
    if isinstance(value, bool):
        target_bool = value

        def exact_bool(attributes: Mapping[str, Any]) -> bool | None:
            user = _present(name, attributes)
            if type(user) is bool:
                return user == target_bool
            return None

        return exact_bool
    if _is_number(value):
        if not _is_finite_number(value):
            return _unknown
        target_number = value

        def exact_number(attributes: Mapping[str, Any]) -> bool | None:
            user = _present(name, attributes)
            if not _is_finite_number(user):
                return None
            return bool(user == target_number)

        return exact_number
    return _unknown


def _compile_numeric(name: Any, value: Any, match: str) -> AttributePredicate:
    if not _is_finite_number(value):
        return _unknown
    target = value

    def check(attributes: Mapping[str, Any]) -> bool | None:
        user = _present(name, attributes)
        if not _is_finite_number(user):
            return None
        if match == "gt":
            return bool(user > target)
        if match == "ge":
            return bool(user >= target)
        if match == "lt":
            return bool(user < target)
        return bool(user <= target)

    return check


def _compile_semver(name: Any, value: Any, match: str) -> AttributePredicate:
    if not isinstance(value, str):
        return _unknown
    target = value
    accept: Callable[[int], bool] = {
        "semver_eq": lambda c: c == 0,
        "semver_gt": lambda c: c > 0,
        "semver_ge": lambda c: c >= 0,
        "semver_lt": lambda c: c < 0,
        "semver_le": lambda c: c <= 0,
    }[match]

    def semver(attributes: Mapping[str, Any]) -> bool | None:
        user = _present(name, attributes)
        if not isinstance(user, str):
            return None
        comparison = compare_versions(target, user)
        if comparison is None:
            return None
        return accept(comparison)

    return semver


# --------------------------------------------------------------------------- trees


def _and(children: tuple[AttributePredicate, ...]) -> AttributePredicate:
    def evaluate(attributes: Mapping[str, Any]) -> bool | None:
        unknown = False
        for child in children:
            result = child(attributes)
            if result is False:
                return False
            if result is None:
                unknown = True
        return None if unknown else True

    return evaluate


def _or(children: tuple[AttributePredicate, ...]) -> AttributePredicate:
    if len(children) == 1:
        return children[0]

    def evaluate(attributes: Mapping[str, Any]) -> bool | None:
        unknown = False
        for child in children:
            result = child(attributes)
            if result is True:
                return True
            if result is None:
                unknown = True
        return None if unknown else False

    return evaluate


def _not(children: tuple[AttributePredicate, ...]) -> AttributePredicate:
    if not children:
        return _unknown
    child = children[0]

    def evaluate(attributes: Mapping[str, Any]) -> bool | None:
        result = child(attributes)
        return None if result is None else not result

    return evaluate


def _compile_tree(tree: Any, leaf: Callable[[Any], AttributePredicate]) -> AttributePredicate:
    if isinstance(tree, list | tuple):
        if not tree:
            return _unknown  # the official SDK fails on an empty nested list
        head = tree[0]
        if isinstance(head, str) and head in _OPERATORS:
            children = tuple(_compile_tree(t, leaf) for t in tree[1:])
            if head == "and":
                return _and(children)
            if head == "not":
                return _not(children)
            return _or(children)
        return _or(tuple(_compile_tree(t, leaf) for t in tree))
    return leaf(tree)


def compile_conditions(tree: Any) -> AttributePredicate:
    """Compile an audience's own condition tree (leaves are condition objects)."""
    return _compile_tree(tree, compile_condition)


def compile_audience_check(
    tree: Any, audiences: Mapping[str, AttributePredicate]
) -> AudienceCheck | None:
    """Compile an experiment's audience tree (leaves are audience ids).

    ``tree`` is ``audienceConditions`` when present, else ``audienceIds``. Returns
    ``None`` when the tree is ``None`` or empty: everyone is admitted. An audience id
    that is not in ``audiences`` evaluates to unknown. Unknown at the top means "not
    admitted".
    """
    if tree is None or (isinstance(tree, list | tuple) and len(tree) == 0):
        return None

    def leaf(audience_id: Any) -> AttributePredicate:
        if isinstance(audience_id, str):
            return audiences.get(audience_id, _unknown)
        return _unknown

    predicate = _compile_tree(tree, leaf)

    def check(attributes: Mapping[str, Any]) -> bool:
        return predicate(attributes) is True

    return check
