"""Building the public model from the wire structs: references, warnings, indexes.

:func:`load_config` decodes the datafile, then :class:`_Builder` reads it once in the
official SDK's order (top-level experiments, rollout rules, group experiments, flags), so
warnings come out in datafile order and a later definition of the same id wins where it
wins in optimizely-sdk. Audience checks are compiled last, once every experiment is
final.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from xpevents.decide.audiences import AttributePredicate, compile_audience_check, compile_conditions
from xpevents.decide.datafile.acceptance import check_conditions_depth, check_limits, refusals
from xpevents.decide.datafile.convert import (
    read_only,
    to_experiment,
    to_flag,
    to_traffic,
    to_variation,
    with_everyone_else,
)
from xpevents.decide.datafile.model import (
    AttributeDef,
    Audience,
    EventDef,
    Experiment,
    Flag,
    Group,
    ProjectConfig,
    Rollout,
    Variation,
)
from xpevents.decide.datafile.wire import WireAudience, WireDatafile, WireFlag, decode
from xpevents.errors import DatafileError

logger = logging.getLogger("xpevents.datafile")

__all__ = ["SUPPORTED_VERSIONS", "load_config"]

SUPPORTED_VERSIONS: Final = ("2", "3", "4")


def _audience_leaves(tree: Any) -> list[Any]:
    if isinstance(tree, list | tuple):
        if tree and isinstance(tree[0], str) and tree[0] in ("and", "or", "not"):
            tree = tree[1:]
        out: list[Any] = []
        for item in tree:
            out.extend(_audience_leaves(item))
        return out
    return [tree]


def _compiled(exp: Experiment, predicates: Mapping[str, AttributePredicate]) -> Experiment:
    tree = (
        exp.audience_conditions if exp.audience_conditions is not None else list(exp.audience_ids)
    )
    return msgspec.structs.replace(exp, audience_check=compile_audience_check(tree, predicates))


def _with_audience_checks(
    by_id: dict[str, Experiment],
    rollouts: dict[str, Rollout],
    groups: dict[str, Group],
    audiences: Mapping[str, Audience],
) -> tuple[dict[str, Experiment], dict[str, Rollout], dict[str, Group]]:
    """The experiments, rollouts and groups again, each experiment with its audience check."""
    predicates = {a.id: a.predicate for a in audiences.values()}
    by_id = {exp_id: _compiled(exp, predicates) for exp_id, exp in by_id.items()}
    rollouts = {
        rid: Rollout(r.id, tuple(_compiled(e, predicates) for e in r.experiments))
        for rid, r in rollouts.items()
    }
    groups = {
        gid: msgspec.structs.replace(g, experiments=tuple(by_id[e.id] for e in g.experiments))
        for gid, g in groups.items()
    }
    return by_id, rollouts, groups


def _flag_variations(
    flags: Mapping[str, Flag], by_id: Mapping[str, Experiment], rollouts: Mapping[str, Rollout]
) -> dict[str, tuple[Variation, ...]]:
    """Per flag key: the variations of its experiments, then its rollout rules (first id wins)."""
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
    return flag_variations


class _Builder:
    """Turns one decoded datafile into a :class:`ProjectConfig`, collecting warnings."""

    def __init__(self, wire: WireDatafile) -> None:
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
        """Check and index the datafile, in the order the official SDK reads it."""
        self._check_version()
        check_limits(self.wire)
        for refusal in refusals(self.wire):
            self.warn(refusal, fatal=True)
        audiences = self._audiences()
        # experiments by id, in the official precedence: top-level, rollout rules,
        # then group experiments (a later definition of the same id wins).
        by_id: dict[str, Experiment] = {}
        for index, w in enumerate(self.wire.experiments or ()):
            path = f"$.experiments[{index}]"
            by_id[w.id] = self._check_experiment(to_experiment(w), path, audiences)
        rollouts = self._rollouts(by_id, audiences)
        groups = self._groups(by_id, audiences)
        flags, experiment_flag_ids = self._flags(by_id, rollouts)
        by_id, rollouts, groups = _with_audience_checks(by_id, rollouts, groups, audiences)
        return self._project_config(audiences, by_id, rollouts, groups, flags, experiment_flag_ids)

    def _check_version(self) -> None:
        version = self.wire.version
        if version not in SUPPORTED_VERSIONS:
            self.warn(
                f"$.version: unsupported datafile version {version!r} "
                f"(supported: {', '.join(SUPPORTED_VERSIONS)})",
                fatal=True,
            )

    def _audiences(self) -> dict[str, Audience]:
        typed_ids = {a.id for a in self.wire.typed_audiences}
        audiences: dict[str, Audience] = {}
        for index, wa in enumerate(self.wire.audiences or ()):
            if wa.id in typed_ids:
                continue  # overridden by typedAudiences; the official SDK never parses it
            audiences[wa.id] = self._audience(wa, f"$.audiences[{index}].conditions")
        for index, wa in enumerate(self.wire.typed_audiences):
            audiences[wa.id] = self._audience(wa, f"$.typedAudiences[{index}].conditions")
        return audiences

    def _audience(self, wire: WireAudience, path: str) -> Audience:
        conditions = wire.conditions
        if isinstance(conditions, str):
            try:
                conditions = json.loads(conditions)
            except (ValueError, RecursionError) as exc:
                raise DatafileError(f"{path}: invalid JSON in conditions string: {exc}") from None
        check_conditions_depth(conditions, path)
        return Audience(wire.id, wire.name, conditions, compile_conditions(conditions))

    def _rollouts(
        self, by_id: dict[str, Experiment], audiences: Mapping[str, Audience]
    ) -> dict[str, Rollout]:
        """The rollouts by id; their rules join ``by_id``."""
        rollouts: dict[str, Rollout] = {}
        for r_index, wr in enumerate(self.wire.rollouts):
            rules = []
            for e_index, w in enumerate(wr.experiments):
                rule = self._check_experiment(
                    to_experiment(w), f"$.rollouts[{r_index}].experiments[{e_index}]", audiences
                )
                rules.append(rule)
                by_id[rule.id] = rule
            rollouts[wr.id] = Rollout(wr.id, tuple(rules))
        return rollouts

    def _groups(
        self, by_id: dict[str, Experiment], audiences: Mapping[str, Audience]
    ) -> dict[str, Group]:
        """The groups by id; their experiments join ``by_id``."""
        groups: dict[str, Group] = {}
        for g_index, wg in enumerate(self.wire.groups or ()):
            members = tuple(
                self._check_experiment(
                    to_experiment(w, group_id=wg.id, group_policy=wg.policy, in_group=True),
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
                wg.id, wg.policy, members, member_ids, to_traffic(wg.traffic_allocation)
            )
            for e in members:
                by_id[e.id] = e
        return groups

    def _flags(
        self, by_id: dict[str, Experiment], rollouts: Mapping[str, Rollout]
    ) -> tuple[dict[str, Flag], dict[str, str]]:
        """The flags by key and the flag id of each experiment id they use.

        A flag naming an experiment or rollout that does not exist makes the datafile
        unusable. Experiments of type ``fr`` in ``by_id`` get the flag's "everyone else"
        variation.
        """
        flags: dict[str, Flag] = {}
        experiment_flag_ids: dict[str, str] = {}
        for f_index, wf in enumerate(self.wire.feature_flags):
            flags[wf.key] = to_flag(wf)
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
            self._join_feature_rollouts(wf, by_id)
        return flags, experiment_flag_ids

    def _join_feature_rollouts(self, flag: WireFlag, by_id: dict[str, Experiment]) -> None:
        # Feature rollouts: the flag's "everyone else" variation joins every
        # experiment of type "fr" (feature rollout), as the official SDK does at load.
        everyone_else = self._everyone_else(flag.rollout_id)
        if everyone_else is None:
            return
        for exp_id in flag.experiment_ids:
            exp = by_id.get(exp_id)
            if exp is not None and exp.type == "fr":
                by_id[exp_id] = with_everyone_else(exp, everyone_else)

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

    def _everyone_else(self, rollout_id: str) -> Variation | None:
        if not rollout_id:
            return None
        for wr in reversed(self.wire.rollouts):  # the last rollout with that id wins
            if wr.id == rollout_id:
                if not wr.experiments or not wr.experiments[-1].variations:
                    return None
                w = wr.experiments[-1].variations[0]
                v = to_variation(w)
                return msgspec.structs.replace(v, feature_enabled=bool(w.feature_enabled))
        return None

    def _project_config(
        self,
        audiences: dict[str, Audience],
        by_id: dict[str, Experiment],
        rollouts: dict[str, Rollout],
        groups: dict[str, Group],
        flags: dict[str, Flag],
        experiment_flag_ids: dict[str, str],
    ) -> ProjectConfig:
        """The config, with the indexes by experiment key and by variation id."""
        wire = self.wire
        by_key: dict[str, Experiment] = {}
        variable_values: dict[str, Mapping[str, Any]] = {}
        for exp in by_id.values():
            by_key[exp.key] = exp
            for var in exp.variations_by_id.values():
                variable_values[var.id] = var.variables
        events = {e.key: EventDef(e.id, e.key, e.experiment_ids) for e in wire.events or ()}
        attributes = {a.key: AttributeDef(a.id, a.key) for a in wire.attributes or ()}
        attributes_by_id = {a.id: AttributeDef(a.id, a.key) for a in wire.attributes or ()}
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
            experiments=read_only(by_key),
            experiments_by_id=read_only(by_id),
            flags=read_only(flags),
            events=read_only(events),
            attributes=read_only(attributes),
            attributes_by_id=read_only(attributes_by_id),
            audiences=read_only(audiences),
            rollouts=read_only(rollouts),
            groups=read_only(groups),
            warnings=tuple(self.warnings),
            usable=self.usable,
            flag_variations=read_only(_flag_variations(flags, by_id, rollouts)),
            variable_values=read_only(variable_values),
            experiment_flag_ids=read_only(experiment_flag_ids),
        )


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
    return _Builder(decode(datafile)).build()
