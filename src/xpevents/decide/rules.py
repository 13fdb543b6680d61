"""Forced decisions and rollout rules: the rule half of a flag decision.

A mixin of :class:`~xpevents.decide.decider.Decider` (kept apart for size): a forced
decision for ``(flag, rule)``; the rollout's rules in order, whatever their status, with
local holdouts after a rule's forced decision; a user who meets a targeted rule's
audiences but is not bucketed jumps to the "everyone else" rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from xpevents.decide.bucketing import BUCKETING_ID_ATTRIBUTE, get_bucketing_id
from xpevents.decide.holdouts import audience_lines
from xpevents.decide.outcome import NO_ROLLOUT_DECISION, SOURCE_ROLLOUT, FlagDecision

if TYPE_CHECKING:
    from xpevents.decide.datafile import Flag, ProjectConfig, Variation
    from xpevents.decide.holdouts import HoldoutPlans
    from xpevents.decide.plan import RolloutRule

__all__ = ["RuleDecisions", "bucketing_id_reason"]


def bucketing_id_reason(attributes: Mapping[str, Any], reasons: list[str]) -> None:
    """The official reason for a ``$opt_bucketing_id`` that is not a string."""
    value = attributes.get(BUCKETING_ID_ATTRIBUTE) if attributes else None
    if value is not None and not isinstance(value, str):
        reasons.append("Bucketing ID attribute is not a string. Defaulted to user_id.")


class RuleDecisions:
    """Forced decisions and rollout rules (see module doc)."""

    __slots__ = ()
    _config: ProjectConfig
    _holdouts: HoldoutPlans
    _rollouts: dict[str, tuple[tuple[RolloutRule, ...], RolloutRule]]

    def _forced_decision(
        self,
        flag: Flag,
        rule_key: str | None,
        forced_decisions: Mapping[tuple[str, str | None], str],
        user_id: str,
        reasons: list[str] | None,
    ) -> Variation | None:
        variation_key = forced_decisions.get((flag.key, rule_key))
        if variation_key is None:
            return None
        for variation in self._config.flag_variations.get(flag.key, ()):
            if variation.key == variation_key:
                if reasons is not None:
                    where = f"flag ({flag.key})" + (f", rule ({rule_key})" if rule_key else "")
                    reasons.append(
                        f"Variation ({variation_key}) is mapped to {where} and user "
                        f"({user_id}) in the forced decision map."
                    )
                return variation
        if reasons is not None:
            where = f"flag ({flag.key})" + (f", rule ({rule_key})" if rule_key else "")
            reasons.append(
                f"Invalid variation is mapped to {where} and user ({user_id}) "
                "in the forced decision map."
            )
        return None

    def _decide_rollout(
        self,
        flag: Flag,
        user_id: str,
        attributes: Mapping[str, Any],
        forced_decisions: Mapping[tuple[str, str | None], str],
        reasons: list[str] | None,
    ) -> FlagDecision:
        if not flag.rollout_id:
            return NO_ROLLOUT_DECISION
        rollout = self._rollouts.get(flag.rollout_id)
        if rollout is None:
            if reasons is not None:
                if flag.rollout_id in self._config.rollouts:
                    reasons.append(f"Rollout {flag.rollout_id} has no experiments.")
                else:
                    reasons.append(f"There is no rollout of feature {flag.key}.")
            return NO_ROLLOUT_DECISION
        targeted, everyone_else = rollout
        bucketing_id = get_bucketing_id(user_id, attributes) if attributes else user_id
        for rule in targeted:
            decision = self._decide_rule(
                rule, flag, user_id, bucketing_id, attributes, forced_decisions, reasons
            )
            if decision is NO_ROLLOUT_DECISION:
                # the user meets this rule's audiences: no other targeted rule is tried
                if reasons is not None:
                    reasons.append(
                        f'User "{user_id}" not bucketed into a targeting rule {rule.label}. '
                        'Checking "Everyone Else" rule now.'
                    )
                break
            if decision is not None:
                return decision
        decision = self._decide_rule(
            everyone_else, flag, user_id, bucketing_id, attributes, forced_decisions, reasons
        )
        return NO_ROLLOUT_DECISION if decision is None else decision

    def _decide_rule(
        self,
        rule: RolloutRule,
        flag: Flag,
        user_id: str,
        bucketing_id: str,
        attributes: Mapping[str, Any],
        forced_decisions: Mapping[tuple[str, str | None], str],
        reasons: list[str] | None,
    ) -> FlagDecision | None:
        """One rollout rule's decision.

        ``None`` when the rule's audiences do not admit the user; ``NO_ROLLOUT_DECISION``
        when they do but the user is bucketed into no variation.
        """
        experiment = rule.experiment
        if forced_decisions:
            forced = self._forced_decision(flag, experiment.key, forced_decisions, user_id, reasons)
            if forced is not None:
                return FlagDecision(
                    experiment, forced, SOURCE_ROLLOUT, bool(forced.feature_enabled)
                )
        if self._holdouts.rule_holdouts:
            local = self._holdouts.local_decision(
                experiment, "delivery rule", user_id, attributes, reasons
            )
            if local is not None:
                return local
        check = rule.plan.audience_check
        admitted = check is None or check(attributes)
        if reasons is not None:
            bucketing_id_reason(attributes, reasons)
            audience_lines(reasons, f"rule {rule.label}", rule.plan, admitted)
            verb = "meets" if admitted else "does not meet"
            reasons.append(
                f'User "{user_id}" {verb} audience conditions for targeting rule {rule.label}.'
            )
        if not admitted:
            return None
        variation = rule.plan.bucket(bucketing_id, user_id, reasons)
        if variation is None:
            return NO_ROLLOUT_DECISION
        if reasons is not None:
            reasons.append(f'User "{user_id}" bucketed into a targeting rule {rule.label}.')
        return FlagDecision(experiment, variation, SOURCE_ROLLOUT, bool(variation.feature_enabled))
