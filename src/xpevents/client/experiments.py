"""The experiment API: ``get_variation``, ``activate`` and forced variations."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from xpevents.client.notifications import NotificationType
from xpevents.client.shared import ClientPart
from xpevents.decide.bucketing import BUCKETING_ID_ATTRIBUTE
from xpevents.decide.reasons import LoggedReasons

if TYPE_CHECKING:
    from xpevents.decide.datafile import Experiment, Variation

__all__ = ["Experiments"]

_DECISION = NotificationType.DECISION
_INFO: Final = logging.INFO
_EMPTY: Final[Mapping[str, Any]] = {}


class Experiments(ClientPart):
    """The bodies of the client's experiment methods (same names, same results)."""

    __slots__ = ()

    def _variation(
        self, method: str, experiment_key: Any, user_id: Any, attributes: Any
    ) -> tuple[Experiment, Variation | None] | None:
        """The experiment and the user's variation in it (``None`` on a bad argument)."""
        experiment = self._inputs.experiment(method, experiment_key, user_id, attributes)
        if experiment is None:
            return None
        forced = self._forced.of(user_id)
        log = self._log  # the official decision lines, when it prints them
        profile = self._profiles.load(user_id) if self._profiles.service is not None else None
        variation = self._decider.get_variation(
            experiment,
            user_id,
            attributes or _EMPTY,
            forced_variation_key=forced.get(experiment_key) if forced else None,
            reasons=LoggedReasons(log) if log.isEnabledFor(_INFO) else None,
            profile=profile,
        )
        if profile is not None:
            self._profiles.save(profile)
        if self._report.listens(_DECISION):
            kind = (
                "feature-test" if experiment.id in self._config.experiment_flag_ids else "ab-test"
            )
            info = {
                "experiment_key": experiment_key,
                "variation_key": variation.key if variation is not None else None,
            }
            self._report.decision(kind, user_id, attributes or {}, info)
        return experiment, variation

    def get_variation(self, experiment_key: Any, user_id: Any, attributes: Any) -> str | None:
        """See :meth:`xpevents.Client.get_variation`."""
        result = self._variation("get_variation", experiment_key, user_id, attributes)
        if result is None or result[1] is None:
            return None
        return result[1].key

    def activate(self, experiment_key: Any, user_id: Any, attributes: Any) -> str | None:
        """See :meth:`xpevents.Client.activate`."""
        if type(experiment_key) is str and type(user_id) is str:
            plan = self._decider.quick_plans.get(experiment_key)
            if (
                plan is not None
                and (attributes is None or type(attributes) is dict)
                and not self._forced.users
                and not self._report.active
                and self._profiles.service is None
                and not self._log.isEnabledFor(_INFO)
                and (not attributes or BUCKETING_ID_ATTRIBUTE not in attributes)
            ):
                check = plan.audience_check
                if check is not None and not check(attributes or _EMPTY):
                    return None
                variation = plan.bucket(user_id, user_id, None)
                if variation is None:
                    return None
                experiment = plan.experiment
                self._report.impression(
                    experiment,
                    variation,
                    user_id,
                    attributes,
                    "",
                    experiment.key,
                    "experiment",
                    True,
                )
                return variation.key
        result = self._variation("activate", experiment_key, user_id, attributes)
        if result is None:
            return None
        experiment, variation = result
        if variation is None:
            self._log.info('Not activating user "%s".', user_id)
            return None
        self._report.impression(
            experiment, variation, user_id, attributes, "", experiment.key, "experiment", True
        )
        return variation.key

    def set_forced_variation(self, experiment_key: Any, user_id: Any, variation_key: Any) -> bool:
        """See :meth:`xpevents.Client.set_forced_variation`."""
        method = "set_forced_variation"
        experiment = self._inputs.experiment(method, experiment_key, user_id)
        if experiment is None:
            return False
        if variation_key is None:
            self._forced.clear(user_id, experiment_key)
            return True
        if not isinstance(variation_key, str) or not variation_key:
            self._inputs.invalid("variation_key", variation_key, method)
            return False
        if variation_key not in experiment.variations_by_key:
            self._inputs.unknown("variation", variation_key, method)
            return False
        self._forced.set(user_id, experiment_key, variation_key)
        return True

    def get_forced_variation(self, experiment_key: Any, user_id: Any) -> str | None:
        """See :meth:`xpevents.Client.get_forced_variation`."""
        experiment = self._inputs.experiment("get_forced_variation", experiment_key, user_id)
        if experiment is None:
            return None
        forced = self._forced.of(user_id)
        variation_key = forced.get(experiment_key) if forced else None
        # set under an older datafile: it applies only while the variation still exists
        return variation_key if variation_key in experiment.variations_by_key else None
