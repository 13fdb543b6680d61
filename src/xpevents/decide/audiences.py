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
* ``semver_*`` compares versions as :mod:`~xpevents.decide.semver` describes;
* ``qualified`` (ODP segments) is ``False`` for a string value (we have no segments)
  and unknown otherwise.

An experiment whose conditions evaluate to unknown does not admit the user.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, Final

from xpevents.decide.semver import compare_versions

logger = logging.getLogger("xpevents.audiences")

__all__ = [
    "CONDITION_TYPES",
    "MATCH_TYPES",
    "AttributePredicate",
    "AudienceCheck",
    "compile_audience_check",
    "compile_condition",
    "compile_conditions",
]

AttributePredicate = Callable[[Mapping[str, Any]], bool | None]
"""A compiled tree: attributes -> True / False / None (unknown)."""

AudienceCheck = Callable[[Mapping[str, Any]], bool]
"""A compiled experiment audience check: attributes -> admitted or not."""

CONDITION_TYPES: Final = frozenset({"custom_attribute", "third_party_dimension"})
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
    condition_type = condition.get("type")
    if not isinstance(condition_type, str) or condition_type not in CONDITION_TYPES:
        return _unknown  # a list or object type is unknown, as official (never unhashable here)
    match = condition.get("match")
    if match is None:
        match = "exact"
    compile_match = _MATCHES.get(match) if isinstance(match, str) else None
    if compile_match is None:
        return _unknown
    return compile_match(condition.get("name"), condition.get("value"), match, _shown(condition))


def _shown(condition: Mapping[str, Any]) -> str:
    """The condition as optimizely-sdk logs it (name, value, type, match)."""
    keys = ("name", "value", "type", "match")
    return json.dumps({k: condition.get(k) for k in keys})


def _mismatch(shown: str, name: Any, user: Any, number: bool = False) -> bool | None:
    """Unknown for a value of the wrong type, with the official SDK's WARNING (no log for
    a missing attribute: that is not a mistake). Off the hot path: only on a mismatch."""
    if user is None:
        return None
    if number and _is_number(user):
        logger.warning(
            'Audience condition "%s" evaluated to UNKNOWN because the number value for user '
            'attribute "%s" is not in the range [-2^53, +2^53].',
            shown,
            name,
        )
    else:
        logger.warning(
            'Audience condition "%s" evaluated to UNKNOWN because a value of type "%s" was '
            'passed for user attribute "%s".',
            shown,
            type(user),
            name,
        )
    return None


def _compile_exists(name: Any, value: Any, match: str, shown: str) -> AttributePredicate:
    def exists(attributes: Mapping[str, Any]) -> bool | None:
        return _present(name, attributes) is not None

    return exists


def _compile_qualified(name: Any, value: Any, match: str, shown: str) -> AttributePredicate:
    result: bool | None = False if isinstance(value, str) else None

    def qualified(attributes: Mapping[str, Any]) -> bool | None:
        return result

    return qualified


def _compile_substring(name: Any, value: Any, match: str, shown: str) -> AttributePredicate:
    if not isinstance(value, str):
        return _unknown
    needle = value

    def substring(attributes: Mapping[str, Any]) -> bool | None:
        user = _present(name, attributes)
        if isinstance(user, str):
            return needle in user
        return _mismatch(shown, name, user)

    return substring


def _compile_exact(name: Any, value: Any, match: str, shown: str) -> AttributePredicate:
    if isinstance(value, str):
        return _exact_str(name, value, shown)
    if isinstance(value, bool):
        return _exact_bool(name, value, shown)
    if _is_finite_number(value):
        return _exact_number(name, value, shown)
    return _unknown


def _exact_str(name: Any, target: str, shown: str) -> AttributePredicate:
    def exact_str(attributes: Mapping[str, Any]) -> bool | None:
        user = _present(name, attributes)
        if isinstance(user, str):
            return user == target
        return _mismatch(shown, name, user)

    return exact_str


def _exact_bool(name: Any, target: bool, shown: str) -> AttributePredicate:
    def exact_bool(attributes: Mapping[str, Any]) -> bool | None:
        user = _present(name, attributes)
        if type(user) is bool:
            return user == target
        return _mismatch(shown, name, user)

    return exact_bool


def _exact_number(name: Any, target: Any, shown: str) -> AttributePredicate:
    def exact_number(attributes: Mapping[str, Any]) -> bool | None:
        user = _present(name, attributes)
        if not _is_finite_number(user):
            return _mismatch(shown, name, user, number=True)
        return bool(user == target)

    return exact_number


def _compile_numeric(name: Any, value: Any, match: str, shown: str) -> AttributePredicate:
    if not _is_finite_number(value):
        return _unknown
    target = value

    def check(attributes: Mapping[str, Any]) -> bool | None:
        user = _present(name, attributes)
        if not _is_finite_number(user):
            return _mismatch(shown, name, user, number=True)
        if match == "gt":
            return bool(user > target)
        if match == "ge":
            return bool(user >= target)
        if match == "lt":
            return bool(user < target)
        return bool(user <= target)

    return check


def _compile_semver(name: Any, value: Any, match: str, shown: str) -> AttributePredicate:
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
            return _mismatch(shown, name, user)
        comparison = compare_versions(target, user)
        if comparison is None:
            return None
        return accept(comparison)

    return semver


_LeafCompiler = Callable[[Any, Any, str, str], AttributePredicate]
"""(attribute name, condition value, match, condition as logged) -> predicate."""

_MATCHES: Final[Mapping[str, _LeafCompiler]] = {
    "exact": _compile_exact,
    "exists": _compile_exists,
    "substring": _compile_substring,
    "gt": _compile_numeric,
    "ge": _compile_numeric,
    "lt": _compile_numeric,
    "le": _compile_numeric,
    "semver_eq": _compile_semver,
    "semver_lt": _compile_semver,
    "semver_le": _compile_semver,
    "semver_gt": _compile_semver,
    "semver_ge": _compile_semver,
    "qualified": _compile_qualified,
}
MATCH_TYPES: Final = frozenset(_MATCHES)


# --------------------------------------------------------------------------- trees


def _junction(children: tuple[AttributePredicate, ...], decisive: bool) -> AttributePredicate:
    """``and`` (``decisive`` False) or ``or`` (``decisive`` True) of the children.

    The first child that answers ``decisive`` decides; otherwise the answer is unknown
    when a child is unknown, else ``not decisive``.
    """
    if len(children) == 1:
        return children[0]
    otherwise = not decisive

    def evaluate(attributes: Mapping[str, Any]) -> bool | None:
        unknown = False
        for child in children:
            result = child(attributes)
            if result is decisive:
                return decisive
            if result is None:
                unknown = True
        return None if unknown else otherwise

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
                return _junction(children, decisive=False)
            if head == "not":
                return _not(children)
            return _junction(children, decisive=True)
        return _junction(tuple(_compile_tree(t, leaf) for t in tree), decisive=True)
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
