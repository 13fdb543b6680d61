"""The datafile: typed, immutable model and lookup indexes.

:func:`load_config` accepts a datafile as ``str``, ``bytes`` or an already-parsed
``dict`` (versions 2, 3 and 4), decodes it with msgspec into frozen wire structs, and
builds a :class:`ProjectConfig` with every index the decision engine needs, once.

Errors
    Anything that cannot be decoded raises :class:`~xpevents.errors.DatafileError`
    whose message starts with the JSON path of the problem, e.g.
    ``$.experiments[3].trafficAllocation[0].endOfRange: expected int, got str``.

Warnings
    Problems the official SDK (optimizely-sdk 5.7.0) tolerates or handles in a
    specific way are logged on the ``xpevents.decide.datafile`` logger and listed in
    :attr:`ProjectConfig.warnings`; they are then handled exactly as the official SDK
    handles them:

    * a traffic allocation entity id that is not a variation of its experiment:
      users bucketed there get no variation;
    * an audience id that does not exist: that audience evaluates to "unknown";
    * a group traffic allocation naming an experiment that is not in the group:
      users bucketed there are in no experiment of the group;
    * a whitelist (``forcedVariations``) naming an unknown variation key: ignored;
    * an unsupported ``version``, a flag naming an experiment id or a rollout id
      that does not exist: the official SDK refuses such a datafile and then answers
      "no decision" for everything. We load it, set :attr:`ProjectConfig.usable` to
      ``False``, and :class:`~xpevents.decide.decider.Decider` answers "no variation" for
      every experiment and flag (a client should report flag decisions with no
      variables, as the official SDK does when it has no config).

Fields we do not use (``cmab``, ``holdouts``, ``integrations``, ...) are accepted and
ignored.

Where the model differs from the official SDK's ``ProjectConfig``:

* :attr:`ProjectConfig.experiments` is keyed like the official SDK's
  ``experiment_key_map``: it holds top-level experiments, group experiments *and*
  rollout rules (the official ``get_variation``/``activate`` accept a rule key).
* Extra attributes: :attr:`ProjectConfig.usable`, :attr:`ProjectConfig.typed_audience_ids`,
  :attr:`ProjectConfig.flag_variations`, :attr:`ProjectConfig.variable_values`,
  :attr:`ProjectConfig.experiment_flag_ids`, :attr:`Experiment.group_policy`,
  :attr:`Experiment.type`, :attr:`Experiment.audience_check`,
  :attr:`Audience.predicate`, :attr:`Group.experiment_ids`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import msgspec

from xpevents.decide.audiences import (
    AttributePredicate,
    AudienceCheck,
    compile_audience_check,
    compile_conditions,
)
from xpevents.errors import DatafileError

logger = logging.getLogger("xpevents.datafile")

__all__ = [
    "SUPPORTED_VERSIONS",
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
    "load_config",
]

SUPPORTED_VERSIONS: Final = ("2", "3", "4")


# --------------------------------------------------------------------------- wire format


class _WireVariableUsage(msgspec.Struct, frozen=True):
    id: str
    value: str


class _WireVariation(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    key: str
    feature_enabled: bool | None = None
    variables: tuple[_WireVariableUsage, ...] = ()


class _WireTraffic(msgspec.Struct, frozen=True, rename="camel"):
    entity_id: str
    end_of_range: int


class _WireExperiment(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    key: str
    status: str
    layer_id: str
    audience_ids: tuple[str, ...]
    variations: tuple[_WireVariation, ...]
    forced_variations: dict[str, str]
    traffic_allocation: tuple[_WireTraffic, ...]
    audience_conditions: Any = None
    group_id: str | None = None
    group_policy: str | None = None
    type: str | None = None


class _WireGroup(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    policy: str
    experiments: tuple[_WireExperiment, ...]
    traffic_allocation: tuple[_WireTraffic, ...]


class _WireVariable(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    key: str
    type: str
    default_value: str
    sub_type: str | None = None


class _WireFlag(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    key: str
    experiment_ids: tuple[str, ...]
    rollout_id: str
    variables: tuple[_WireVariable, ...]


class _WireRollout(msgspec.Struct, frozen=True):
    id: str
    experiments: tuple[_WireExperiment, ...]


class _WireEvent(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    key: str
    experiment_ids: tuple[str, ...]


class _WireAttribute(msgspec.Struct, frozen=True):
    id: str
    key: str


class _WireAudience(msgspec.Struct, frozen=True):
    id: str
    name: str
    conditions: Any


class _WireDatafile(msgspec.Struct, frozen=True, rename="camel"):
    version: str
    account_id: str
    project_id: str
    revision: str
    anonymize_ip: bool = msgspec.field(default=False, name="anonymizeIP")
    bot_filtering: bool | None = None
    send_flag_decisions: bool = False
    region: str | None = None
    sdk_key: str | None = None
    environment_key: str | None = None
    groups: tuple[_WireGroup, ...] = ()
    experiments: tuple[_WireExperiment, ...] = ()
    feature_flags: tuple[_WireFlag, ...] = ()
    rollouts: tuple[_WireRollout, ...] = ()
    events: tuple[_WireEvent, ...] = ()
    attributes: tuple[_WireAttribute, ...] = ()
    audiences: tuple[_WireAudience, ...] = ()
    typed_audiences: tuple[_WireAudience, ...] = ()


_DECODER: Final = msgspec.json.Decoder(_WireDatafile)

# --------------------------------------------------------------------------- public model


class Variation(msgspec.Struct, frozen=True):
    """A variation of an experiment or rollout rule.

    ``variables`` maps a variable id to its value string, as in the datafile.
    ``feature_enabled`` is ``None`` when the datafile does not say.
    """

    id: str
    key: str
    feature_enabled: bool | None
    variables: Mapping[str, str]


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
    default_value: str
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

    Mappings are read-only views. See the module docstring for ``usable`` and
    ``warnings``.
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
    variable_values: Mapping[str, Mapping[str, str]]
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


# --------------------------------------------------------------------------- errors

_MSGSPEC_AT = re.compile(r"^(?P<problem>.*?) - at `(?P<path>[^`]*)`(?: in `(?P<parent>[^`]*)`)?$")


def _reformat(message: str) -> str:
    """Turn a msgspec message into ``$.path: problem``."""
    match = _MSGSPEC_AT.match(message)
    if match:
        problem, path, parent = match["problem"], match["path"], match["parent"]
        if parent is not None:  # e.g. "Expected `str` - at `key` in `$`" (a dict key)
            path = f"{parent} (a key)"
    else:
        problem, path = message, "$"
    missing = re.match(r"Object missing required field `([^`]*)`", problem)
    if missing:
        return f"{path}.{missing[1]}: missing required field"
    problem = problem.replace("`", "")
    if problem:
        problem = problem[0].lower() + problem[1:]
    return f"{path}: {problem}"


def _decode(datafile: str | bytes | Mapping[str, Any]) -> _WireDatafile:
    if isinstance(datafile, str | bytes | bytearray | memoryview):
        try:
            return _DECODER.decode(datafile)
        except msgspec.ValidationError as exc:
            raise DatafileError(_reformat(str(exc))) from None
        except msgspec.DecodeError as exc:
            raise DatafileError(f"$: invalid JSON: {exc}") from None
    if isinstance(datafile, Mapping):
        try:
            return msgspec.convert(dict(datafile), type=_WireDatafile)
        except msgspec.ValidationError as exc:
            raise DatafileError(_reformat(str(exc))) from None
    raise DatafileError(
        f"$: expected a datafile as str, bytes or dict, got {type(datafile).__name__}"
    )


# --------------------------------------------------------------------------- building


def _ro(mapping: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(mapping)


def _variation(wire: _WireVariation) -> Variation:
    values: dict[str, str] = {}
    for usage in wire.variables:
        values[usage.id] = usage.value
    return Variation(wire.id, wire.key, wire.feature_enabled, _ro(values))


def _traffic(wire: tuple[_WireTraffic, ...]) -> tuple[TrafficAllocation, ...]:
    return tuple(TrafficAllocation(t.entity_id, t.end_of_range) for t in wire)


def _experiment(
    wire: _WireExperiment,
    *,
    group_id: str | None = None,
    group_policy: str | None = None,
    in_group: bool = False,
) -> Experiment:
    variations = tuple(_variation(v) for v in wire.variations)
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
        variations_by_key=_ro(by_key),
        variations_by_id=_ro(by_id),
        traffic_allocation=_traffic(wire.traffic_allocation),
        audience_ids=wire.audience_ids,
        audience_conditions=wire.audience_conditions,
        forced_variations=_ro(dict(wire.forced_variations)),
        group_id=group_id if in_group else wire.group_id,
        group_policy=group_policy if in_group else wire.group_policy,
        type=wire.type,
        audience_check=None,
    )


def _with_everyone_else(experiment: Experiment, everyone_else: Variation) -> Experiment:
    """Inject a flag's "everyone else" variation into a feature rollout (type ``fr``) experiment."""
    by_key = dict(experiment.variations_by_key)
    by_id = dict(experiment.variations_by_id)
    by_key[everyone_else.key] = everyone_else
    by_id[everyone_else.id] = everyone_else
    return msgspec.structs.replace(
        experiment,
        variations=(*experiment.variations, everyone_else),
        variations_by_key=_ro(by_key),
        variations_by_id=_ro(by_id),
        traffic_allocation=(
            *experiment.traffic_allocation,
            TrafficAllocation(everyone_else.id, 10000),
        ),
    )


def _audience_leaves(tree: Any) -> list[Any]:
    if isinstance(tree, list | tuple):
        if tree and isinstance(tree[0], str) and tree[0] in ("and", "or", "not"):
            tree = tree[1:]
        out: list[Any] = []
        for item in tree:
            out.extend(_audience_leaves(item))
        return out
    return [tree]


class _Builder:
    def __init__(self, wire: _WireDatafile) -> None:
        self.wire = wire
        self.warnings: list[str] = []
        self.usable = True

    def warn(self, message: str, *, fatal: bool = False) -> None:
        if fatal:
            self.usable = False
            message += (
                "; the official SDK refuses such a datafile, so every decision is 'no variation'"
            )
        self.warnings.append(message)
        logger.warning("datafile: %s", message)

    def build(self) -> ProjectConfig:
        wire = self.wire
        if wire.version not in SUPPORTED_VERSIONS:
            self.warn(
                f"$.version: unsupported datafile version {wire.version!r} "
                f"(supported: {', '.join(SUPPORTED_VERSIONS)})",
                fatal=True,
            )

        audiences = self._audiences()
        predicates = {a.id: a.predicate for a in audiences.values()}

        # experiments by id, in the official precedence: top-level, rollout rules,
        # then group experiments (a later definition of the same id wins).
        by_id: dict[str, Experiment] = {}
        for i, w in enumerate(wire.experiments):
            by_id[w.id] = self._check_experiment(_experiment(w), f"$.experiments[{i}]", audiences)
        rollouts: dict[str, Rollout] = {}
        for r_index, wr in enumerate(wire.rollouts):
            rules = []
            for e_index, w in enumerate(wr.experiments):
                rule = self._check_experiment(
                    _experiment(w), f"$.rollouts[{r_index}].experiments[{e_index}]", audiences
                )
                rules.append(rule)
                by_id[rule.id] = rule
            rollouts[wr.id] = Rollout(wr.id, tuple(rules))
        groups: dict[str, Group] = {}
        for g_index, wg in enumerate(wire.groups):
            members = tuple(
                self._check_experiment(
                    _experiment(w, group_id=wg.id, group_policy=wg.policy, in_group=True),
                    f"$.groups[{g_index}].experiments[{e_index}]",
                    audiences,
                )
                for e_index, w in enumerate(wg.experiments)
            )
            member_ids = frozenset(e.id for e in members)
            for t_index, t in enumerate(wg.traffic_allocation):
                if t.entity_id and t.entity_id not in member_ids:
                    self.warn(
                        f"$.groups[{g_index}].trafficAllocation[{t_index}].entityId: "
                        f"experiment {t.entity_id!r} is not in group {wg.id!r}; users "
                        "bucketed there are in no experiment of the group"
                    )
            groups[wg.id] = Group(
                wg.id, wg.policy, members, member_ids, _traffic(wg.traffic_allocation)
            )
            for e in members:
                by_id[e.id] = e

        flags: dict[str, Flag] = {}
        experiment_flag_ids: dict[str, str] = {}
        for f_index, wf in enumerate(wire.feature_flags):
            variables: dict[str, VariableDef] = {}
            for v in wf.variables:
                vtype = "json" if (v.type == "string" and v.sub_type == "json") else v.type
                variables[v.key] = VariableDef(v.id, v.key, vtype, v.default_value, v.sub_type)
            flag = Flag(wf.id, wf.key, wf.rollout_id, wf.experiment_ids, _ro(variables))
            flags[wf.key] = flag
            for e_index, exp_id in enumerate(wf.experiment_ids):
                experiment_flag_ids[exp_id] = wf.id
                if exp_id not in by_id:
                    self.warn(
                        f"$.featureFlags[{f_index}].experimentIds[{e_index}]: experiment "
                        f"{exp_id!r} does not exist",
                        fatal=True,
                    )
            if wf.rollout_id and wf.rollout_id not in rollouts:
                self.warn(
                    f"$.featureFlags[{f_index}].rolloutId: "
                    f"rollout {wf.rollout_id!r} does not exist",
                    fatal=True,
                )
            # Feature rollouts: the flag's "everyone else" variation joins every
            # experiment of type "fr" (feature rollout), as the official SDK does at load.
            everyone_else = self._everyone_else(wf.rollout_id)
            if everyone_else is not None:
                for exp_id in wf.experiment_ids:
                    exp = by_id.get(exp_id)
                    if exp is not None and exp.type == "fr":
                        by_id[exp_id] = _with_everyone_else(exp, everyone_else)

        # compile audience checks once every experiment is final
        for exp_id, exp in list(by_id.items()):
            by_id[exp_id] = self._compiled(exp, predicates)
        rollouts = {
            rid: Rollout(r.id, tuple(self._compiled(e, predicates) for e in r.experiments))
            for rid, r in rollouts.items()
        }
        groups = {
            gid: msgspec.structs.replace(g, experiments=tuple(by_id[e.id] for e in g.experiments))
            for gid, g in groups.items()
        }

        by_key: dict[str, Experiment] = {}
        variable_values: dict[str, Mapping[str, str]] = {}
        for exp in by_id.values():
            by_key[exp.key] = exp
            for var in exp.variations_by_id.values():
                variable_values[var.id] = var.variables

        flag_variations: dict[str, tuple[Variation, ...]] = {}
        for flag in flags.values():
            seen: dict[str, Variation] = {}
            rule_ids = [i for i in flag.experiment_ids if i in by_id]
            rollout = rollouts.get(flag.rollout_id)
            if rollout is not None:
                rule_ids.extend(r.id for r in rollout.experiments)
            for rule_id in rule_ids:
                for var in by_id[rule_id].variations_by_id.values():
                    seen.setdefault(var.id, var)
            flag_variations[flag.key] = tuple(seen.values())

        events = {e.key: EventDef(e.id, e.key, e.experiment_ids) for e in wire.events}
        attributes = {a.key: AttributeDef(a.id, a.key) for a in wire.attributes}
        attributes_by_id = {a.id: AttributeDef(a.id, a.key) for a in wire.attributes}

        return ProjectConfig(
            version=wire.version,
            account_id=wire.account_id,
            project_id=wire.project_id,
            revision=wire.revision,
            anonymize_ip=wire.anonymize_ip,
            bot_filtering=wire.bot_filtering,
            send_flag_decisions=wire.send_flag_decisions,
            region=wire.region or "US",
            sdk_key=wire.sdk_key,
            environment_key=wire.environment_key,
            experiments=_ro(by_key),
            experiments_by_id=_ro(by_id),
            flags=_ro(flags),
            events=_ro(events),
            attributes=_ro(attributes),
            attributes_by_id=_ro(attributes_by_id),
            audiences=_ro(audiences),
            rollouts=_ro(rollouts),
            groups=_ro(groups),
            warnings=tuple(self.warnings),
            usable=self.usable,
            flag_variations=_ro(flag_variations),
            variable_values=_ro(variable_values),
            experiment_flag_ids=_ro(experiment_flag_ids),
        )

    def _audiences(self) -> dict[str, Audience]:
        typed_ids = {a.id for a in self.wire.typed_audiences}
        audiences: dict[str, Audience] = {}
        for index, wa in enumerate(self.wire.audiences):
            if wa.id in typed_ids:
                continue  # overridden by typedAudiences; the official SDK never parses it
            audiences[wa.id] = self._audience(wa, f"$.audiences[{index}].conditions")
        for index, wa in enumerate(self.wire.typed_audiences):
            audiences[wa.id] = self._audience(wa, f"$.typedAudiences[{index}].conditions")
        return audiences

    def _audience(self, wire: _WireAudience, path: str) -> Audience:
        conditions = wire.conditions
        if isinstance(conditions, str):
            try:
                conditions = json.loads(conditions)
            except ValueError as exc:
                raise DatafileError(f"{path}: invalid JSON in conditions string: {exc}") from None
        return Audience(wire.id, wire.name, conditions, compile_conditions(conditions))

    def _check_experiment(
        self, exp: Experiment, path: str, audiences: Mapping[str, Audience]
    ) -> Experiment:
        for index, t in enumerate(exp.traffic_allocation):
            if t.entity_id and t.entity_id not in exp.variations_by_id:
                self.warn(
                    f"{path}.trafficAllocation[{index}].entityId: variation {t.entity_id!r} "
                    f"is not a variation of experiment {exp.key!r}; users bucketed there "
                    "get no variation"
                )
        tree = exp.audience_conditions if exp.audience_conditions is not None else exp.audience_ids
        field = "audienceConditions" if exp.audience_conditions is not None else "audienceIds"
        for leaf in _audience_leaves(tree):
            if not isinstance(leaf, str) or leaf not in audiences:
                self.warn(
                    f"{path}.{field}: audience {leaf!r} does not exist; it evaluates to unknown"
                )
        for user_id, key in exp.forced_variations.items():
            if key not in exp.variations_by_key:
                self.warn(
                    f"{path}.forcedVariations.{user_id}: variation {key!r} is not a variation "
                    f"of experiment {exp.key!r}; the whitelist entry is ignored"
                )
        return exp

    def _compiled(
        self, exp: Experiment, predicates: Mapping[str, AttributePredicate]
    ) -> Experiment:
        tree = (
            exp.audience_conditions
            if exp.audience_conditions is not None
            else list(exp.audience_ids)
        )
        return msgspec.structs.replace(exp, audience_check=compile_audience_check(tree, predicates))

    def _everyone_else(self, rollout_id: str) -> Variation | None:
        if not rollout_id:
            return None
        for wr in reversed(self.wire.rollouts):  # the last rollout with that id wins
            if wr.id == rollout_id:
                if not wr.experiments or not wr.experiments[-1].variations:
                    return None
                w = wr.experiments[-1].variations[0]
                v = _variation(w)
                return msgspec.structs.replace(v, feature_enabled=bool(w.feature_enabled))
        return None


def load_config(datafile: str | bytes | Mapping[str, Any]) -> ProjectConfig:
    """Decode and index a datafile.

    Args:
        datafile: the datafile as JSON text (``str`` or ``bytes``) or as a parsed dict.

    Returns:
        An immutable :class:`ProjectConfig`.

    Raises:
        DatafileError: the datafile is not valid JSON, not an object, or a field is
            missing or of the wrong type; the message starts with the JSON path.
    """
    config = _Builder(_decode(datafile)).build()
    return config
