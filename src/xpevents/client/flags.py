"""The decide API: one flag, many flags, for :class:`~xpevents.Client` and user contexts.

:class:`FlagDecisions` is the one object both :meth:`xpevents.Client.decide` and
:class:`~xpevents.client.user_context.OptimizelyUserContext` call: a user context passes
its snapshot (attributes, forced decisions, itself) and never touches the client's
internals. Each decided flag is one engine decision, one impression when the official
SDK sends one, and one ``decision`` notification of type ``"flag"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from xpevents.client.notifications import NotificationType
from xpevents.client.shared import ClientPart, Collaborators
from xpevents.decide import Decision, OptimizelyDecideOption, parse_decide_options
from xpevents.decide.decider import SOURCE_FEATURE_TEST, SOURCE_HOLDOUT
from xpevents.decide.reasons import reasons_for

if TYPE_CHECKING:
    from xpevents.client.user_context import OptimizelyUserContext
    from xpevents.decide.datafile import Flag
    from xpevents.decide.decider import FlagDecision
    from xpevents.decide.profile import StickyProfile

__all__ = ["FlagDecisions", "ForcedDecisions"]

ForcedDecisions = Mapping[tuple[str, str | None], str]
"""A user context's forced decisions: ``(flag_key, rule_key)`` → variation key."""

_FLAG_KEY_INVALID: Final = 'No flag was found for key "{}".'
_SDK_NOT_READY: Final = "Optimizely SDK not configured properly yet."

_DECISION = NotificationType.DECISION
_DISABLE_EVENT = OptimizelyDecideOption.DISABLE_DECISION_EVENT
_ENABLED_ONLY = OptimizelyDecideOption.ENABLED_FLAGS_ONLY
_INCLUDE_REASONS = OptimizelyDecideOption.INCLUDE_REASONS
_EXCLUDE_VARIABLES = OptimizelyDecideOption.EXCLUDE_VARIABLES
_IGNORE_PROFILES = OptimizelyDecideOption.IGNORE_USER_PROFILE_SERVICE
_ALWAYS_SENT: Final = frozenset({SOURCE_FEATURE_TEST, SOURCE_HOLDOUT})

_EMPTY: Final[Mapping[Any, Any]] = {}


class FlagDecisions(ClientPart):
    """Decides flags with the decide-API options, impressions and notifications."""

    __slots__ = ("_default_options",)

    def __init__(
        self, shared: Collaborators, *, default_options: frozenset[OptimizelyDecideOption]
    ) -> None:
        super().__init__(shared)
        self._default_options = default_options

    # The client's methods: check the user, then decide with no forced decisions.

    def decide(
        self, user_id: Any, flag_key: Any, attributes: Any, options: Iterable[Any] | None
    ) -> Decision:
        """See :meth:`xpevents.Client.decide`."""
        if not isinstance(user_id, str):
            self._inputs.invalid("user_id", user_id, "decide")
            return Decision(
                flag_key=flag_key if isinstance(flag_key, str) else None,
                reasons=(f'Provided "user_id" is in an invalid format: {user_id!r}.',),
            )
        if not self._inputs.attributes(attributes, "decide"):
            return Decision(
                flag_key=flag_key if isinstance(flag_key, str) else None,
                user_id=user_id,
                reasons=(f'Provided "attributes" is in an invalid format: {attributes!r}.',),
            )
        return self.decide_one(user_id, attributes or {}, flag_key, options, _EMPTY, None)

    def decide_keys(
        self,
        method: str,
        user_id: Any,
        keys: Iterable[Any] | None,
        attributes: Any,
        options: Iterable[Any] | None,
    ) -> dict[str, Decision]:
        """See :meth:`xpevents.Client.decide_all` (``keys`` ``None``) and ``decide_for_keys``."""
        if not self._inputs.user(user_id, attributes, method):
            return {}
        return self.decide_many(user_id, attributes or {}, keys, options, _EMPTY, None)

    # What user contexts call, with their snapshot.

    def decide_one(
        self,
        user_id: str,
        attributes: dict[str, Any],
        key: Any,
        options: Iterable[Any] | None,
        forced_decisions: ForcedDecisions,
        user_context: OptimizelyUserContext | None,
    ) -> Decision:
        """Decide the flag ``key``; a disabled decision saying why for a bad or unknown key."""
        if isinstance(key, str) and not self._inputs.ready("decide"):
            return Decision(
                flag_key=key, user_id=user_id, reasons=(_SDK_NOT_READY,), user_context=user_context
            )
        flag = self._config.flags.get(key) if isinstance(key, str) else None
        if flag is None:
            if isinstance(key, str):
                self._inputs.unknown("flag", key, "decide")
            else:
                self._inputs.invalid("flag_key", key, "decide")
            return Decision(
                flag_key=key if isinstance(key, str) else None,
                user_id=user_id,
                reasons=(_FLAG_KEY_INVALID.format(key),),
                user_context=user_context,
            )
        opts = self._options(options)
        profile = self._profile(user_id, opts)
        decision = self._decide_flag(
            user_id, attributes, flag, opts, forced_decisions, user_context, profile
        )
        if profile is not None:
            self._profiles.save(profile)
        return decision

    def decide_many(
        self,
        user_id: str,
        attributes: dict[str, Any],
        keys: Iterable[Any] | None,
        options: Iterable[Any] | None,
        forced_decisions: ForcedDecisions,
        user_context: OptimizelyUserContext | None,
    ) -> dict[str, Decision]:
        """Decide ``keys`` (every flag, in datafile order, when ``None``); key → decision.

        In the official order: keys that name no flag first, then the flags in the order
        asked. One profile lookup and at most one save for the whole call.
        """
        if not self._inputs.ready("decide_all" if keys is None else "decide_for_keys"):
            return {}
        opts = self._options(options)
        enabled_only = _ENABLED_ONLY in opts
        flags = self._config.flags
        result: dict[str, Decision] = {}
        known: list[Flag] = []
        for key in flags if keys is None else keys:
            flag = flags.get(key) if isinstance(key, str) else None
            if flag is None:
                result[key] = Decision(flag_key=key, user_id=user_id, user_context=user_context)
            else:
                known.append(flag)
        profile = self._profile(user_id, opts)
        for flag in known:
            decision = self._decide_flag(
                user_id, attributes, flag, opts, forced_decisions, user_context, profile
            )
            if not enabled_only or decision.enabled:
                result[flag.key] = decision
        if profile is not None:
            self._profiles.save(profile)
        return result

    def _profile(
        self, user_id: str, opts: frozenset[OptimizelyDecideOption]
    ) -> StickyProfile | None:
        """The user's sticky profile for this call, unless there is none or it is ignored."""
        if self._profiles.service is None or _IGNORE_PROFILES in opts:
            return None
        return self._profiles.load(user_id)

    def _options(self, options: Iterable[Any] | None) -> frozenset[OptimizelyDecideOption]:
        if not options:
            return self._default_options
        return parse_decide_options(options, strict=self._inputs.strict) | self._default_options

    def _decide_flag(
        self,
        user_id: str,
        attributes: dict[str, Any],
        flag: Flag,
        opts: frozenset[OptimizelyDecideOption],
        forced_decisions: ForcedDecisions,
        user_context: OptimizelyUserContext | None,
        profile: StickyProfile | None,
    ) -> Decision:
        include = _INCLUDE_REASONS in opts
        reasons = reasons_for(self._log, include)
        forced = self._forced.of(user_id)
        decision = self._decider.decide_flag(
            flag,
            user_id,
            attributes,
            forced_variations=forced or _EMPTY,
            forced_decisions=forced_decisions,
            reasons=reasons,
            profile=profile,
        )
        if decision.error:  # the official error decision: nothing sent, no notification
            if reasons is None:  # it carries its reasons even without INCLUDE_REASONS
                reasons = []
                self._decider.decide_flag(
                    flag,
                    user_id,
                    attributes,
                    forced_variations=forced or _EMPTY,
                    forced_decisions=forced_decisions,
                    reasons=reasons,
                )
            errors = tuple(reasons)
            return Decision(
                flag_key=flag.key, user_id=user_id, reasons=errors, user_context=user_context
            )
        experiment, variation, enabled = decision.experiment, decision.variation, decision.enabled
        rule_key = experiment.key if experiment is not None else None
        dispatched = _DISABLE_EVENT not in opts and self._impressions(
            decision, user_id, attributes, flag.key
        )
        variables = {} if _EXCLUDE_VARIABLES in opts else self._decider.variables(flag, decision)
        reason_tuple = tuple(reasons) if reasons and include else ()
        if self._report.listens(_DECISION):
            self._notify(user_id, attributes, flag, decision, variables, reason_tuple, dispatched)
        return Decision(
            variation_key=variation.key if variation is not None else None,
            enabled=enabled,
            variables=variables,
            rule_key=rule_key,
            flag_key=flag.key,
            user_id=user_id,
            reasons=reason_tuple,
            user_context=user_context,
        )

    def _impressions(
        self, decision: FlagDecision, user_id: str, attributes: dict[str, Any], flag_key: str
    ) -> bool:
        """Send the decision's impressions, as official; whether one was sent."""
        source = decision.source
        held = decision.holdout
        if held is not None and source != SOURCE_HOLDOUT:
            # excludeTargetedDeliveries: the holdout's impression too, first (as official)
            self._report.impression(
                held.experiment,
                held.variation,
                user_id,
                attributes,
                flag_key,
                held.rule_key or "",
                SOURCE_HOLDOUT,
                held.enabled,
            )
        if not (source in _ALWAYS_SENT or self._config.send_flag_decisions):
            return held is not None
        self._report.impression(
            decision.experiment,
            decision.variation,
            user_id,
            attributes,
            flag_key,
            decision.rule_key or "",
            source,
            decision.enabled,
        )
        return True

    def _notify(
        self,
        user_id: str,
        attributes: dict[str, Any],
        flag: Flag,
        decision: FlagDecision,
        variables: dict[str, Any],
        reasons: tuple[str, ...],
        dispatched: bool,
    ) -> None:
        experiment, variation = decision.experiment, decision.variation
        info = {
            "flag_key": flag.key,
            "enabled": decision.enabled,
            "variables": variables,
            "variation_key": decision.variation_key,
            "rule_key": decision.rule_key,
            "reasons": list(reasons),
            "decision_event_dispatched": dispatched,
            "experiment_id": experiment.id if experiment is not None else None,
            "variation_id": variation.id if variation is not None else None,
        }
        self._report.decision("flag", user_id, attributes, info)
