"""Which datafiles are usable: the official SDK's rules, and the limits that keep us safe.

optimizely-sdk 5.7.0 refuses a datafile (logs ``Provided "datafile" is in an invalid
format.``, and the client stays "not configured properly", deciding nothing) when its
JSON schema check fails or when building its ``ProjectConfig`` raises. Three outcomes
here:

* :class:`~xpevents.errors.DatafileError` for what cannot be decoded into the model at
  all (wrong JSON type of a field we read, a missing required field, not JSON), and for
  the limits below;
* :func:`refusals`: the datafile decodes, but the official SDK refuses it; the builder
  loads it as unusable (every decision "no variation"), or raises with ``strict=True``;
* nothing: usable.

Limits (the official SDK has none, and some of these crash it or the host process):
nesting deeper than :data:`MAX_DEPTH` in audience conditions, audience conditions of an
experiment that are not lists of audience ids (the official SDK raises while building
its ``OptimizelyConfig``), a traffic range without ``entityId``/``endOfRange`` where the
schema requires them. Strings that no encoder can write (lone surrogates) are refused
while decoding (:func:`~xpevents.decide.datafile.wire.decode`).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from xpevents.decide.datafile.wire import WireDatafile, WireExperiment, WireTraffic
from xpevents.errors import DatafileError

__all__ = ["MAX_DEPTH", "check_conditions_depth", "check_limits", "refusals"]

MAX_DEPTH: Final = 200
"""Deepest nesting accepted in a condition tree (real datafiles stay below 10)."""

_REQUIRED_ARRAYS: Final = ("groups", "experiments", "events", "audiences", "attributes")


def check_conditions_depth(tree: Any, path: str) -> None:
    """Raise :class:`DatafileError` when ``tree`` nests lists or objects beyond the limit."""
    stack: list[tuple[Any, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise DatafileError(
                f"{path}: nested deeper than {MAX_DEPTH} levels; simplify the conditions"
            )
        if isinstance(node, list | tuple):
            stack.extend((child, depth + 1) for child in node)
        elif isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())


def _check_audience_ids_tree(tree: Any, path: str) -> None:
    """An experiment's ``audienceConditions``: lists of operators and audience ids only."""
    if tree is None:
        return
    check_conditions_depth(tree, path)
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif not isinstance(node, str):
            raise DatafileError(
                f"{path}: expected a list of audience ids (strings) and nested lists, found "
                f"{node!r}; the official SDK fails on it"
            )


def _check_traffic(traffic: tuple[WireTraffic, ...], path: str) -> None:
    """Where the schema requires both fields of a range (experiments and groups)."""
    for index, t in enumerate(traffic):
        if t.entity_id is msgspec.UNSET:
            raise DatafileError(f"{path}[{index}].entityId: missing required field")
        if t.end_of_range is msgspec.UNSET:
            raise DatafileError(f"{path}[{index}].endOfRange: missing required field")


def _check_experiment(exp: WireExperiment, path: str) -> None:
    _check_traffic(exp.traffic_allocation, f"{path}.trafficAllocation")
    _check_audience_ids_tree(exp.audience_conditions, f"{path}.audienceConditions")


def check_limits(wire: WireDatafile) -> None:
    """Raise :class:`DatafileError` for what the engine refuses to load (see module doc)."""
    for index, exp in enumerate(wire.experiments or ()):
        _check_experiment(exp, f"$.experiments[{index}]")
    for g_index, group in enumerate(wire.groups or ()):
        _check_traffic(group.traffic_allocation, f"$.groups[{g_index}].trafficAllocation")
        for e_index, exp in enumerate(group.experiments):
            _check_experiment(exp, f"$.groups[{g_index}].experiments[{e_index}]")
    for r_index, rollout in enumerate(wire.rollouts):
        for e_index, rule in enumerate(rollout.experiments):
            path = f"$.rollouts[{r_index}].experiments[{e_index}].audienceConditions"
            _check_audience_ids_tree(rule.audience_conditions, path)
    for h_index, holdout in enumerate(wire.holdouts):
        path = f"$.holdouts[{h_index}].audienceConditions"
        _check_audience_ids_tree(holdout.audience_conditions, path)


def refusals(wire: WireDatafile) -> list[str]:
    """Why the official SDK refuses this decodable datafile (empty: it accepts it)."""
    out: list[str] = []
    for name in _REQUIRED_ARRAYS:
        if getattr(wire, name) is msgspec.UNSET:
            out.append(f"$.{name}: missing required array (the official schema)")
    for index, audience in enumerate(wire.audiences or ()):
        if not isinstance(audience.conditions, str):
            out.append(
                f"$.audiences[{index}].conditions: expected a JSON string (the official "
                "schema; conditions as objects belong in typedAudiences)"
            )
    return out
