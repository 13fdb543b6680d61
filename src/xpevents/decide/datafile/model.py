"""The public datafile model: frozen structs with the indexes decisions need.

Everything here is immutable (mappings are read-only views) and built once by
:func:`~xpevents.decide.datafile.load_config`, so a :class:`ProjectConfig` can be shared
between threads without locks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from xpevents.decide.audiences import AttributePredicate, AudienceCheck

__all__ = [
    "AttributeDef",
    "Audience",
    "EventDef",
    "Experiment",
    "Flag",
    "Group",
    "ProjectConfig",
    "Rollout",
    "TrafficAllocation",
    "VariableDef",
    "Variation",
]


class Variation(msgspec.Struct, frozen=True):
    """A variation of an experiment or rollout rule.

    ``variables`` maps a variable id to its value string, as in the datafile.
    ``feature_enabled`` is ``None`` when the datafile does not say.
    """

    id: str
    key: str
    feature_enabled: bool | None
    variables: Mapping[str, Any]


class TrafficAllocation(msgspec.Struct, frozen=True):
    """One range of a traffic allocation: buckets below ``end_of_range`` go to ``entity_id``."""

    entity_id: str
    end_of_range: int


class Experiment(msgspec.Struct, frozen=True):
    """An experiment, a group experiment or a rollout rule.

    ``audience_conditions`` is ``None`` or the parsed tree of audience ids;
    ``audience_check`` is the compiled audience test (``None``: everyone qualifies).
    ``group_id``/``group_policy`` are set for experiments of a group.
    """

    id: str
    key: str
    status: str
    layer_id: str
    variations: tuple[Variation, ...]
    variations_by_key: Mapping[str, Variation]
    variations_by_id: Mapping[str, Variation]
    traffic_allocation: tuple[TrafficAllocation, ...]
    audience_ids: tuple[str, ...]
    audience_conditions: Any
    forced_variations: Mapping[str, str]
    group_id: str | None
    group_policy: str | None
    type: str | None
    audience_check: AudienceCheck | None

    @property
    def is_running(self) -> bool:
        """Whether the experiment's status is ``Running`` (the only status that activates)."""
        return self.status == "Running"


class VariableDef(msgspec.Struct, frozen=True):
    """A flag variable: ``type`` is boolean, integer, double, string or json.

    A ``string`` variable with ``sub_type`` ``json`` is reported as type ``json``, as
    the official SDK does.
    """

    id: str
    key: str
    type: str
    default_value: Any
    sub_type: str | None


class Flag(msgspec.Struct, frozen=True):
    """A feature flag: its experiments (in order), its rollout and its variables by key."""

    id: str
    key: str
    rollout_id: str
    experiment_ids: tuple[str, ...]
    variables: Mapping[str, VariableDef]


class Rollout(msgspec.Struct, frozen=True):
    """A rollout: its rules in order, the "everyone else" rule last."""

    id: str
    experiments: tuple[Experiment, ...]


class EventDef(msgspec.Struct, frozen=True):
    """A conversion event."""

    id: str
    key: str
    experiment_ids: tuple[str, ...]


class AttributeDef(msgspec.Struct, frozen=True):
    """A user attribute declared in the datafile."""

    id: str
    key: str


class Audience(msgspec.Struct, frozen=True):
    """An audience: ``conditions`` is the parsed tree, ``predicate`` its compiled form."""

    id: str
    name: str
    conditions: Any
    predicate: AttributePredicate


class Group(msgspec.Struct, frozen=True):
    """A mutually exclusive group (``policy`` ``random`` buckets into the group first)."""

    id: str
    policy: str
    experiments: tuple[Experiment, ...]
    experiment_ids: frozenset[str]
    traffic_allocation: tuple[TrafficAllocation, ...]


class ProjectConfig(msgspec.Struct, frozen=True):
    """A loaded datafile with its indexes; immutable and safe to share between threads.

    Mappings are read-only views. See :mod:`xpevents.decide.datafile` for ``usable``
    and ``warnings``.
    """

    version: str
    account_id: str
    project_id: str
    revision: str
    anonymize_ip: bool
    bot_filtering: bool | None
    send_flag_decisions: bool
    region: str
    sdk_key: str | None
    environment_key: str | None
    experiments: Mapping[str, Experiment]
    experiments_by_id: Mapping[str, Experiment]
    flags: Mapping[str, Flag]
    events: Mapping[str, EventDef]
    attributes: Mapping[str, AttributeDef]
    attributes_by_id: Mapping[str, AttributeDef]
    audiences: Mapping[str, Audience]
    rollouts: Mapping[str, Rollout]
    groups: Mapping[str, Group]
    warnings: tuple[str, ...]
    usable: bool
    flag_variations: Mapping[str, tuple[Variation, ...]]
    """Per flag key: every variation of its experiments and rollout rules (deduplicated
    by id, first wins), used to resolve forced decisions by variation key."""
    variable_values: Mapping[str, Mapping[str, Any]]
    """Per variation id: variable id -> value string (the official SDK's global map)."""
    experiment_flag_ids: Mapping[str, str]
    """Experiment id -> id of the flag that uses it (feature tests)."""

    def flag_rules(self, flag: Flag) -> tuple[Experiment, ...]:
        """The flag's experiments (as resolved by id), then its rollout's rules."""
        rules = [
            self.experiments_by_id[i] for i in flag.experiment_ids if i in self.experiments_by_id
        ]
        rollout = self.rollouts.get(flag.rollout_id)
        if rollout is not None:
            rules.extend(rollout.experiments)
        return tuple(rules)

    def is_feature_experiment(self, experiment_id: str) -> bool:
        """Whether an experiment id is used by a feature flag (a "feature test")."""
        return experiment_id in self.experiment_flag_ids
