"""Holdouts read as optimizely-sdk 5.7.0 reads them.

* ``holdouts`` (global): each entry must be a full holdout (``id``, ``key``, ``status``,
  ``variations``, ``trafficAllocation``, ``audienceIds``) or the official SDK refuses the
  datafile; an ``includedRules`` there is ignored with a warning.
* ``localHoldouts``: an entry without ``includedRules`` is skipped with an error (whatever
  else it lacks); the others are full holdouts scoped to the rule ids listed.
* Only ``Running`` holdouts are decided; the others are read and ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from xpevents.decide.audiences import AttributePredicate, compile_audience_check
from xpevents.decide.datafile.acceptance import check_conditions_depth
from xpevents.decide.datafile.convert import read_only, to_traffic, to_variation
from xpevents.decide.datafile.model import Experiment, Holdout, Variation
from xpevents.decide.datafile.wire import WireDatafile, WireHoldout, reformat_error
from xpevents.errors import DatafileError

__all__ = ["read_holdouts"]

logger = logging.getLogger("xpevents.datafile")


def _holdout(
    wire: WireHoldout, predicates: Mapping[str, AttributePredicate], *, glob: bool
) -> Holdout:
    variations = tuple(to_variation(v) for v in wire.variations)
    by_key: dict[str, Variation] = {v.key: v for v in variations}
    by_id: dict[str, Variation] = {v.id: v for v in variations}  # official: later id wins
    tree = (
        wire.audience_conditions
        if wire.audience_conditions is not None
        else list(wire.audience_ids)
    )
    experiment = Experiment(
        id=wire.id,
        key=wire.key,
        status=wire.status,
        layer_id="",
        variations=variations,
        variations_by_key=read_only(by_key),
        variations_by_id=read_only(by_id),
        traffic_allocation=to_traffic(wire.traffic_allocation),
        audience_ids=wire.audience_ids,
        audience_conditions=wire.audience_conditions,
        forced_variations=read_only({}),
        group_id=None,
        group_policy=None,
        type="holdout",
        audience_check=compile_audience_check(tree, predicates),
    )
    return Holdout(experiment, wire.exclude_targeted_deliveries, glob)


def _local(raw: dict[str, Any], path: str) -> WireHoldout | None:
    if raw.get("includedRules") is None:
        logger.error(
            'Local holdout with ID "%s" is missing required "includedRules" field and will be '
            "excluded from evaluation.",
            raw.get("id", "<unknown>"),
        )
        return None
    try:
        wire = msgspec.convert(raw, type=WireHoldout)
    except msgspec.ValidationError as exc:
        message = reformat_error(str(exc)).replace("$", path, 1)
        raise DatafileError(message) from None
    check_conditions_depth(wire.audience_conditions, f"{path}.audienceConditions")
    return wire


def read_holdouts(
    wire: WireDatafile,
    predicates: Mapping[str, AttributePredicate],
    warn: Callable[[str], None],
) -> tuple[tuple[Holdout, ...], dict[str, tuple[Holdout, ...]]]:
    """The running global holdouts, and the running local holdouts by rule id."""
    global_holdouts: list[Holdout] = []
    for index, w in enumerate(wire.holdouts):
        if w.included_rules is not None:
            warn(
                f'$.holdouts[{index}].includedRules: global holdout "{w.key}" (id: {w.id}) has '
                '"includedRules" which will be ignored; global holdouts apply to all flags'
            )
        if w.status == "Running":
            global_holdouts.append(_holdout(w, predicates, glob=True))
    by_rule: dict[str, list[Holdout]] = {}
    for index, raw in enumerate(wire.local_holdouts):
        local = _local(raw, f"$.localHoldouts[{index}]")
        if local is None or local.status != "Running":
            continue
        holdout = _holdout(local, predicates, glob=False)
        for rule_id in local.included_rules or ():
            by_rule.setdefault(rule_id, []).append(holdout)
    return tuple(global_holdouts), {rule: tuple(hs) for rule, hs in by_rule.items()}
