"""One wire struct to one model struct: no cross-references, no warnings.

The builder (:mod:`~xpevents.decide.datafile.build`) decides what to convert and in
which order; these functions only copy and index, as the official SDK does at load.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import msgspec

from xpevents.decide.datafile.model import (
    Experiment,
    Flag,
    TrafficAllocation,
    VariableDef,
    Variation,
)
from xpevents.decide.datafile.wire import WireExperiment, WireFlag, WireTraffic, WireVariation

__all__ = [
    "read_only",
    "to_experiment",
    "to_flag",
    "to_traffic",
    "to_variation",
    "with_everyone_else",
]


def read_only(mapping: dict[str, Any]) -> Mapping[str, Any]:
    """A read-only view: the config is shared between threads and must not change."""
    return MappingProxyType(mapping)


def to_variation(wire: WireVariation) -> Variation:
    values: dict[str, Any] = {}
    for usage in wire.variables:
        values[usage.id] = usage.value
    return Variation(wire.id, wire.key, wire.feature_enabled, read_only(values))


def to_traffic(wire: tuple[WireTraffic, ...]) -> tuple[TrafficAllocation, ...]:
    """The ranges; one without ``endOfRange`` is skipped and one without ``entityId``
    buckets into nothing (only rollout rules may lack them), as in optimizely-sdk."""
    return tuple(
        TrafficAllocation("" if t.entity_id is msgspec.UNSET else t.entity_id, t.end_of_range)
        for t in wire
        if t.end_of_range is not msgspec.UNSET
    )


def to_experiment(
    wire: WireExperiment,
    *,
    group_id: str | None = None,
    group_policy: str | None = None,
    in_group: bool = False,
) -> Experiment:
    """An experiment without its audience check (compiled once every experiment is final).

    Experiments of a group (``in_group``) take the group's id and policy, whatever
    their own fields say.
    """
    variations = tuple(to_variation(v) for v in wire.variations)
    # As the official SDK: variations are indexed by key (a later duplicate key wins),
    # and the id index is built from that key index.
    by_key: dict[str, Variation] = {}
    for v in variations:
        by_key[v.key] = v
    by_id: dict[str, Variation] = {v.id: v for v in by_key.values()}
    return Experiment(
        id=wire.id,
        key=wire.key,
        status=wire.status,
        layer_id=wire.layer_id,
        variations=variations,
        variations_by_key=read_only(by_key),
        variations_by_id=read_only(by_id),
        traffic_allocation=to_traffic(wire.traffic_allocation),
        audience_ids=wire.audience_ids,
        audience_conditions=wire.audience_conditions,
        forced_variations=read_only(
            {u: k for u, k in wire.forced_variations.items() if isinstance(k, str)}
        ),
        group_id=group_id if in_group else wire.group_id,
        group_policy=group_policy if in_group else wire.group_policy,
        type=wire.type,
        audience_check=None,
    )


def with_everyone_else(experiment: Experiment, everyone_else: Variation) -> Experiment:
    """Inject a flag's "everyone else" variation into a feature rollout (type ``fr``) experiment."""
    by_key = dict(experiment.variations_by_key)
    by_id = dict(experiment.variations_by_id)
    by_key[everyone_else.key] = everyone_else
    by_id[everyone_else.id] = everyone_else
    return msgspec.structs.replace(
        experiment,
        variations=(*experiment.variations, everyone_else),
        variations_by_key=read_only(by_key),
        variations_by_id=read_only(by_id),
        traffic_allocation=(
            *experiment.traffic_allocation,
            TrafficAllocation(everyone_else.id, 10000),
        ),
    )


def to_flag(wire: WireFlag) -> Flag:
    """A flag with its variables by key; a string variable of sub-type json is a json one."""
    variables: dict[str, VariableDef] = {}
    for v in wire.variables:
        vtype = "json" if (v.type == "string" and v.sub_type == "json") else v.type
        variables[v.key] = VariableDef(v.id, v.key, vtype, v.default_value, v.sub_type)
    return Flag(wire.id, wire.key, wire.rollout_id, wire.experiment_ids, read_only(variables))
