"""``xpevents.Client``: decisions, impressions and conversions, optimizely-sdk compatible.

::

    with xpevents.Client(datafile) as client:
        variation = client.activate("checkout_test", "user-1", {"country": "FR"})
        client.track("purchase", "user-1", event_tags={"revenue": 4200})
        decision = client.decide("user-1", "new_checkout")

Every public method behaves like the same method of the official optimizely-sdk 5.7.0
``Optimizely`` class (same return values, same events, same notifications) and never
raises into the caller on bad input: it logs a message naming the argument and returns
``None`` / ``False`` / a disabled :class:`~xpevents.Decision`. ``Client(strict=True)``
raises :class:`~xpevents.decide.InvalidInputError` (a ``ValueError``) instead, which is
what tests and development want.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from xpevents._version import __version__
from xpevents.client.notifications import NotificationCenter, NotificationType
from xpevents.client.user_context import OptimizelyUserContext
from xpevents.decide import (
    Decision,
    InvalidInputError,
    OptimizelyDecideOption,
    UnknownKeyError,
    parse_decide_options,
)
from xpevents.decide.datafile import load_config
from xpevents.decide.decider import Decider
from xpevents.errors import ConfigError, DatafileError, DispatchError
from xpevents.events.builder import EventBuilder

if TYPE_CHECKING:
    from xpevents.decide.datafile import Experiment, Flag, ProjectConfig, Variation
    from xpevents.dispatch.protocol import EventDispatcher
    from xpevents.events.model import LogEvent

__all__ = ["Client"]

_log = logging.getLogger("xpevents.client")

_FLAG_KEY_INVALID: Final = 'No flag was found for key "{}".'
_SDK_NOT_READY: Final = "Optimizely SDK not configured properly yet."
_FEATURE_TEST: Final = "feature-test"
_ROLLOUT: Final = "rollout"
_EXPERIMENT: Final = "experiment"

_DECISION = NotificationType.DECISION
_ACTIVATE = NotificationType.ACTIVATE
_TRACK = NotificationType.TRACK
_LOG_EVENT = NotificationType.LOG_EVENT

_DISABLE_EVENT = OptimizelyDecideOption.DISABLE_DECISION_EVENT
_ENABLED_ONLY = OptimizelyDecideOption.ENABLED_FLAGS_ONLY
_INCLUDE_REASONS = OptimizelyDecideOption.INCLUDE_REASONS
_EXCLUDE_VARIABLES = OptimizelyDecideOption.EXCLUDE_VARIABLES

_EMPTY: Final[Mapping[Any, Any]] = {}


def _default_dispatcher(event_endpoint: str | None) -> EventDispatcher:
    """The dispatcher a client creates (and owns) when none is given.

    A :class:`~xpevents.BatchDispatcher` with its defaults: Optimizely's own advice
    for production (queue, batch, retry; ``activate`` never waits on the network).
    """
    from xpevents.dispatch.batch import BatchDispatcher

    return BatchDispatcher(endpoint=event_endpoint)


def _variable_type(variable: Any) -> str:
    vtype: str = variable.type
    if vtype == "string" and getattr(variable, "sub_type", None) == "json":
        return "json"
    return vtype


class Client:
    """Decides variations and sends impressions and conversions for one datafile.

    Args:
        datafile: the project datafile as JSON text (``str`` or ``bytes``) or a decoded
            ``dict``. A datafile that cannot be decoded raises
            :class:`~xpevents.DatafileError` here, naming the JSON path of the problem.
        event_dispatcher: anything with ``dispatch_event(event)``. Default ``None``: the
            client creates its own :class:`~xpevents.BatchDispatcher` (non-blocking,
            batching, retrying) and flushes and closes it in :meth:`close`. A
            dispatcher you pass is never closed by the client.
        event_endpoint: send events here instead of the event API
            (``https://logx.optimizely.com/v1/events``, or the EU endpoint when the
            datafile's region is ``EU``). Default ``None``.
        client_name: ``client_name`` in every payload. Default ``"xpevents"``.
        client_version: ``client_version`` in every payload. Default the package version.
        strict: raise :class:`~xpevents.decide.InvalidInputError` (bad argument),
            :class:`~xpevents.decide.UnknownKeyError` (key not in the datafile) or
            :class:`~xpevents.DispatchError` (the dispatcher raised) instead of logging.
            Default ``False``, which is what production wants.
        logger: where the client logs. Default the ``xpevents.client`` logger.
        default_decide_options: decide options applied to every ``decide*`` call (enum
            members or the official strings). Default none.

    Thread-safe, forced variations and user-context forced decisions included. Use it as
    a context manager, or call :meth:`close`, to flush and close what it owns.
    """

    def __init__(
        self,
        datafile: str | bytes | Mapping[str, Any],
        event_dispatcher: EventDispatcher | None = None,
        *,
        event_endpoint: str | None = None,
        client_name: str = "xpevents",
        client_version: str = __version__,
        strict: bool = False,
        logger: logging.Logger | None = None,
        default_decide_options: Iterable[Any] = (),
    ) -> None:
        if event_dispatcher is not None and not callable(
            getattr(event_dispatcher, "dispatch_event", None)
        ):
            raise ConfigError(
                f"event_dispatcher {event_dispatcher!r} has no dispatch_event(event) method; "
                "pass an xpevents dispatcher, any object with dispatch_event, or None"
            )
        self._log = logger if logger is not None else _log
        self._strict = bool(strict)
        self._config: ProjectConfig = load_config(datafile)
        self._usable = self._config.usable
        if not self._usable:
            message = (
                "the datafile cannot be used (" + "; ".join(self._config.warnings) + "); "
                "like optimizely-sdk, the client will decide nothing and send no events"
            )
            if self._strict:
                raise DatafileError(message)
            self._log.error(message)
        self._decider = Decider(self._config)
        self._builder = EventBuilder(
            self._config,
            client_name=client_name,
            client_version=client_version,
            endpoint=event_endpoint,
        )
        self._default_options = parse_decide_options(default_decide_options, strict=True)
        self.notification_center = NotificationCenter()
        """Listeners for ``decision``, ``activate``, ``track`` and ``log_event``."""
        self._listeners = self.notification_center._listeners
        # The official key map: top-level and group experiments and rollout rules.
        self._experiments: Mapping[str, Experiment] = self._config.experiments
        self._feature_experiment_ids: Mapping[str, str] = self._config.experiment_flag_ids
        self._forced_lock = threading.Lock()
        # user id -> {experiment key -> variation key}; inner dicts replaced, never mutated
        self._forced_variations: dict[str, dict[str, str]] = {}
        if event_dispatcher is None:
            self._dispatcher: EventDispatcher = _default_dispatcher(event_endpoint)
            self._owns_dispatcher = True
        else:
            self._dispatcher = event_dispatcher
            self._owns_dispatcher = False
        self._closed = False

    # -- properties ---------------------------------------------------------------------

    @property
    def config(self) -> ProjectConfig:
        """The project config decoded from the datafile (read-only)."""
        return self._config

    @property
    def event_dispatcher(self) -> EventDispatcher:
        """The dispatcher events are handed to."""
        return self._dispatcher

    @property
    def event_builder(self) -> EventBuilder:
        """The builder that turns impressions and conversions into payloads."""
        return self._builder

    @property
    def default_decide_options(self) -> frozenset[OptimizelyDecideOption]:
        """Options applied to every ``decide*`` call."""
        return self._default_options

    # -- errors -------------------------------------------------------------------------

    def _invalid(self, argument: str, value: object, method: str) -> None:
        message = f'{method}: provided "{argument}" is in an invalid format: {value!r}.'
        if self._strict:
            raise InvalidInputError(message)
        self._log.error(message)

    def _unknown(self, what: str, key: str, method: str) -> None:
        message = f'{method}: {what} key "{key}" is not in the datafile.'
        if self._strict:
            raise UnknownKeyError(message)
        self._log.info(message)

    def _not_ready(self, method: str) -> bool:
        """Log (once per call) that the datafile is unusable; ``True`` when it is."""
        if self._usable:
            return False
        self._log.error('%s: the datafile cannot be used; failing "%s".', method, method)
        return True

    def _check_attributes(self, attributes: Any, method: str) -> bool:
        if attributes and not isinstance(attributes, dict):
            self._invalid("attributes", attributes, method)
            return False
        return True

    # -- events -------------------------------------------------------------------------

    def _dispatch(self, event: LogEvent) -> None:
        if self._listeners[_LOG_EVENT]:
            self.notification_center._send(_LOG_EVENT, event)
        try:
            self._dispatcher.dispatch_event(event)
        except Exception as exc:
            if self._strict:
                raise DispatchError(
                    f"event dispatcher {self._dispatcher!r} raised {exc!r}",
                    reason="dispatcher_raised",
                    url=event.url,
                ) from exc
            self._log.exception(
                "Event dispatcher %r raised; the event to %s is lost.", self._dispatcher, event.url
            )

    def _send_impression(
        self,
        experiment: Experiment | None,
        variation: Variation | None,
        user_id: str,
        attributes: Any,
        flag_key: str,
        rule_key: str,
        rule_type: str,
        enabled: bool,
    ) -> None:
        try:
            event = self._builder.impression(
                experiment,
                variation,
                user_id,
                attributes,
                flag_key=flag_key,
                rule_key=rule_key,
                rule_type=rule_type,
                enabled=enabled,
            )
        except Exception:  # pragma: no cover - defensive: never break the caller
            self._log.exception("Could not build the impression for user %r.", user_id)
            return
        self._dispatch(event)
        if self._listeners[_ACTIVATE]:
            self.notification_center._send(
                _ACTIVATE,
                experiment,
                user_id,
                attributes,
                variation,
                {
                    "url": event.url,
                    "params": event.params,
                    "http_verb": event.http_verb,
                    "headers": event.headers,
                },
            )

    # -- experiments --------------------------------------------------------------------

    def _experiment_variation(
        self, method: str, experiment_key: Any, user_id: Any, attributes: Any
    ) -> tuple[Experiment, Variation | None] | None:
        if not isinstance(experiment_key, str) or not experiment_key:
            self._invalid("experiment_key", experiment_key, method)
            return None
        if not isinstance(user_id, str):
            self._invalid("user_id", user_id, method)
            return None
        if self._not_ready(method):
            return None
        experiment = self._experiments.get(experiment_key)
        if experiment is None:
            self._unknown("experiment", experiment_key, method)
            return None
        if not self._check_attributes(attributes, method):
            return None
        forced = self._forced_variations.get(user_id)
        variation = self._decider.get_variation(
            experiment,
            user_id,
            attributes or _EMPTY,
            forced_variation_key=forced.get(experiment_key) if forced else None,
        )
        if self._listeners[_DECISION]:
            self.notification_center._send(
                _DECISION,
                _FEATURE_TEST if experiment.id in self._feature_experiment_ids else "ab-test",
                user_id,
                attributes or {},
                {
                    "experiment_key": experiment_key,
                    "variation_key": variation.key if variation is not None else None,
                },
            )
        return experiment, variation

    def get_variation(
        self, experiment_key: str, user_id: str, attributes: dict[str, Any] | None = None
    ) -> str | None:
        """The variation key ``user_id`` gets in the experiment, without sending an event.

        ``None`` when the user is not in the experiment, the experiment is not running,
        or an argument is invalid (logged).
        """
        result = self._experiment_variation("get_variation", experiment_key, user_id, attributes)
        if result is None or result[1] is None:
            return None
        return result[1].key

    def activate(
        self, experiment_key: str, user_id: str, attributes: dict[str, Any] | None = None
    ) -> str | None:
        """Decide the user's variation and send an impression; returns the variation key.

        ``None`` (and no event) when the user is not in the experiment, the experiment is
        not running, or an argument is invalid (logged).
        """
        result = self._experiment_variation("activate", experiment_key, user_id, attributes)
        if result is None:
            return None
        experiment, variation = result
        if variation is None:
            self._log.info('Not activating user "%s".', user_id)
            return None
        self._send_impression(
            experiment, variation, user_id, attributes, "", experiment.key, _EXPERIMENT, True
        )
        return variation.key

    def track(
        self,
        event_key: str,
        user_id: str,
        attributes: dict[str, Any] | None = None,
        event_tags: dict[str, Any] | None = None,
    ) -> None:
        """Send a conversion of ``event_key`` for ``user_id``.

        ``event_tags`` may carry ``revenue`` (an integer, in cents) and ``value`` (a
        number); all tags are sent as ``tags``. Nothing is sent (and the reason is logged)
        for an unknown event key or invalid arguments.
        """
        if not isinstance(event_key, str) or not event_key:
            self._invalid("event_key", event_key, "track")
            return
        if not isinstance(user_id, str):
            self._invalid("user_id", user_id, "track")
            return
        if not self._check_attributes(attributes, "track"):
            return
        if event_tags and not isinstance(event_tags, dict):
            self._invalid("event_tags", event_tags, "track")
            return
        if self._not_ready("track"):
            return
        event_def = self._config.events.get(event_key)
        if event_def is None:
            self._unknown("event", event_key, "track")
            return
        try:
            event = self._builder.conversion(event_def, user_id, attributes, event_tags)
        except Exception:  # pragma: no cover - defensive
            self._log.exception("Could not build the conversion %r for %r.", event_key, user_id)
            return
        self._dispatch(event)
        if self._listeners[_TRACK]:
            self.notification_center._send(
                _TRACK,
                event_key,
                user_id,
                attributes,
                event_tags,
                {
                    "url": event.url,
                    "params": event.params,
                    "http_verb": event.http_verb,
                    "headers": event.headers,
                },
            )

    # -- forced variations --------------------------------------------------------------

    def set_forced_variation(
        self, experiment_key: str, user_id: str, variation_key: str | None
    ) -> bool:
        """Force ``user_id`` into ``variation_key`` of the experiment (``None`` clears it).

        Returns whether it was done: ``False`` for an unknown experiment or variation.
        """
        if not isinstance(experiment_key, str) or not experiment_key:
            self._invalid("experiment_key", experiment_key, "set_forced_variation")
            return False
        if not isinstance(user_id, str):
            self._invalid("user_id", user_id, "set_forced_variation")
            return False
        if self._not_ready("set_forced_variation"):
            return False
        experiment = self._experiments.get(experiment_key)
        if experiment is None:
            self._unknown("experiment", experiment_key, "set_forced_variation")
            return False
        with self._forced_lock:
            current = self._forced_variations.get(user_id, {})
            if variation_key is None:
                if experiment_key in current:
                    updated = dict(current)
                    del updated[experiment_key]
                    if updated:
                        self._forced_variations[user_id] = updated
                    else:
                        del self._forced_variations[user_id]
                return True
            if not isinstance(variation_key, str) or not variation_key:
                self._invalid("variation_key", variation_key, "set_forced_variation")
                return False
            if variation_key not in experiment.variations_by_key:
                self._unknown("variation", variation_key, "set_forced_variation")
                return False
            updated = dict(current)
            updated[experiment_key] = variation_key
            self._forced_variations[user_id] = updated
        return True

    def get_forced_variation(self, experiment_key: str, user_id: str) -> str | None:
        """The variation key forced with :meth:`set_forced_variation`, or ``None``."""
        if not isinstance(experiment_key, str) or not experiment_key:
            self._invalid("experiment_key", experiment_key, "get_forced_variation")
            return None
        if not isinstance(user_id, str):
            self._invalid("user_id", user_id, "get_forced_variation")
            return None
        if self._not_ready("get_forced_variation"):
            return None
        if experiment_key not in self._experiments:
            self._unknown("experiment", experiment_key, "get_forced_variation")
            return None
        forced = self._forced_variations.get(user_id)
        return forced.get(experiment_key) if forced else None

    # -- feature flags (legacy API) -----------------------------------------------------

    def _flag_for(
        self, method: str, feature_key: Any, user_id: Any, attributes: Any
    ) -> Flag | None:
        if not isinstance(feature_key, str) or not feature_key:
            self._invalid("feature_key", feature_key, method)
            return None
        if not isinstance(user_id, str):
            self._invalid("user_id", user_id, method)
            return None
        if not self._check_attributes(attributes, method):
            return None
        if self._not_ready(method):
            return None
        flag = self._config.flags.get(feature_key)
        if flag is None:
            self._unknown("feature flag", feature_key, method)
        return flag

    def _decide_flag(self, flag: Flag, user_id: str, attributes: Any) -> Any:
        forced = self._forced_variations.get(user_id)
        return self._decider.decide_flag(
            flag, user_id, attributes or _EMPTY, forced_variations=forced or _EMPTY
        )

    @staticmethod
    def _source_info(decision: Any) -> dict[str, Any]:
        if decision.source == _FEATURE_TEST:
            return {
                "experiment_key": decision.experiment.key if decision.experiment else None,
                "variation_key": decision.variation.key if decision.variation else None,
            }
        return {}

    def is_feature_enabled(
        self, feature_key: str, user_id: str, attributes: dict[str, Any] | None = None
    ) -> bool:
        """Whether the flag is on for the user; sends the impression the official SDK sends.

        A feature test always sends an impression; a rollout (or no rule at all) sends
        one only when the datafile sets ``sendFlagDecisions``.
        """
        flag = self._flag_for("is_feature_enabled", feature_key, user_id, attributes)
        if flag is None:
            return False
        decision = self._decide_flag(flag, user_id, attributes)
        variation = decision.variation
        experiment = decision.experiment
        enabled = variation is not None and variation.feature_enabled is True
        source = decision.source
        if (source == _ROLLOUT or variation is None) and self._config.send_flag_decisions:
            self._send_impression(
                experiment,
                variation,
                user_id,
                attributes,
                flag.key,
                experiment.key if experiment is not None else "",
                str(source),
                enabled,
            )
        if source == _FEATURE_TEST and variation is not None and experiment is not None:
            self._send_impression(
                experiment,
                variation,
                user_id,
                attributes,
                flag.key,
                experiment.key,
                source,
                enabled,
            )
        if self._listeners[_DECISION]:
            self.notification_center._send(
                _DECISION,
                "feature",
                user_id,
                attributes or {},
                {
                    "feature_key": feature_key,
                    "feature_enabled": enabled,
                    "source": source,
                    "source_info": self._source_info(decision),
                },
            )
        return enabled

    def get_enabled_features(
        self, user_id: str, attributes: dict[str, Any] | None = None
    ) -> list[str]:
        """The keys of the flags enabled for the user (one :meth:`is_feature_enabled` each)."""
        if not isinstance(user_id, str):
            self._invalid("user_id", user_id, "get_enabled_features")
            return []
        if not self._check_attributes(attributes, "get_enabled_features"):
            return []
        if self._not_ready("get_enabled_features"):
            return []
        return [
            key for key in self._config.flags if self.is_feature_enabled(key, user_id, attributes)
        ]

    def _feature_variable(
        self,
        method: str,
        feature_key: Any,
        variable_key: Any,
        variable_type: str | None,
        user_id: Any,
        attributes: Any,
    ) -> Any:
        if not isinstance(feature_key, str) or not feature_key:
            self._invalid("feature_key", feature_key, method)
            return None
        if not isinstance(variable_key, str) or not variable_key:
            self._invalid("variable_key", variable_key, method)
            return None
        flag = self._flag_for(method, feature_key, user_id, attributes)
        if flag is None:
            return None
        variable = flag.variables.get(variable_key)
        if variable is None:
            self._unknown(f'variable (of flag "{feature_key}")', variable_key, method)
            return None
        actual_type = _variable_type(variable)
        if variable_type is not None and variable_type != actual_type:
            message = (
                f'{method}: variable "{variable_key}" is of type "{actual_type}", '
                f'not "{variable_type}"; use the matching getter.'
            )
            if self._strict:
                raise InvalidInputError(message)
            self._log.warning(message)
            return None
        decision = self._decide_flag(flag, user_id, attributes)
        variation = decision.variation
        enabled = variation is not None and variation.feature_enabled is True
        try:
            value = self._decider.variable_value(flag, variable_key, variation, enabled)
        except Exception:
            self._log.exception("Unable to cast the value of variable %r.", variable_key)
            value = None
        if self._listeners[_DECISION]:
            self.notification_center._send(
                _DECISION,
                "feature-variable",
                user_id,
                attributes or {},
                {
                    "feature_key": feature_key,
                    "feature_enabled": enabled,
                    "source": decision.source,
                    "variable_key": variable_key,
                    "variable_value": value,
                    "variable_type": actual_type,
                    "source_info": self._source_info(decision),
                },
            )
        return value

    def get_feature_variable(
        self,
        feature_key: str,
        variable_key: str,
        user_id: str,
        attributes: dict[str, Any] | None = None,
    ) -> Any:
        """The typed value of a flag variable for the user (its default when the flag is off)."""
        return self._feature_variable(
            "get_feature_variable", feature_key, variable_key, None, user_id, attributes
        )

    def get_feature_variable_boolean(
        self,
        feature_key: str,
        variable_key: str,
        user_id: str,
        attributes: dict[str, Any] | None = None,
    ) -> bool | None:
        """Like :meth:`get_feature_variable`; ``None`` unless the variable is a boolean."""
        value: bool | None = self._feature_variable(
            "get_feature_variable_boolean",
            feature_key,
            variable_key,
            "boolean",
            user_id,
            attributes,
        )
        return value

    def get_feature_variable_double(
        self,
        feature_key: str,
        variable_key: str,
        user_id: str,
        attributes: dict[str, Any] | None = None,
    ) -> float | None:
        """Like :meth:`get_feature_variable`; ``None`` unless the variable is a double."""
        value: float | None = self._feature_variable(
            "get_feature_variable_double", feature_key, variable_key, "double", user_id, attributes
        )
        return value

    def get_feature_variable_integer(
        self,
        feature_key: str,
        variable_key: str,
        user_id: str,
        attributes: dict[str, Any] | None = None,
    ) -> int | None:
        """Like :meth:`get_feature_variable`; ``None`` unless the variable is an integer."""
        value: int | None = self._feature_variable(
            "get_feature_variable_integer",
            feature_key,
            variable_key,
            "integer",
            user_id,
            attributes,
        )
        return value

    def get_feature_variable_string(
        self,
        feature_key: str,
        variable_key: str,
        user_id: str,
        attributes: dict[str, Any] | None = None,
    ) -> str | None:
        """Like :meth:`get_feature_variable`; ``None`` unless the variable is a string."""
        value: str | None = self._feature_variable(
            "get_feature_variable_string", feature_key, variable_key, "string", user_id, attributes
        )
        return value

    def get_feature_variable_json(
        self,
        feature_key: str,
        variable_key: str,
        user_id: str,
        attributes: dict[str, Any] | None = None,
    ) -> Any:
        """Like :meth:`get_feature_variable`; ``None`` unless the variable is JSON."""
        return self._feature_variable(
            "get_feature_variable_json", feature_key, variable_key, "json", user_id, attributes
        )

    def get_all_feature_variables(
        self, feature_key: str, user_id: str, attributes: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """Every variable of the flag (key -> typed value) for the user; ``None`` if unknown."""
        method = "get_all_feature_variables"
        flag = self._flag_for(method, feature_key, user_id, attributes)
        if flag is None:
            return None
        decision = self._decide_flag(flag, user_id, attributes)
        variation = decision.variation
        enabled = variation is not None and variation.feature_enabled is True
        values = self._variables(flag, variation, enabled)
        if self._listeners[_DECISION]:
            self.notification_center._send(
                _DECISION,
                "all-feature-variables",
                user_id,
                attributes or {},
                {
                    "feature_key": feature_key,
                    "feature_enabled": enabled,
                    "variable_values": values,
                    "source": decision.source,
                    "source_info": self._source_info(decision),
                },
            )
        return values

    def _variables(self, flag: Flag, variation: Variation | None, enabled: bool) -> dict[str, Any]:
        values: dict[str, Any] = {}
        variable_value = self._decider.variable_value
        for key in flag.variables:
            try:
                values[key] = variable_value(flag, key, variation, enabled)
            except Exception:
                self._log.exception("Unable to cast the value of variable %r.", key)
                values[key] = None
        return values

    # -- decide -------------------------------------------------------------------------

    def create_user_context(
        self, user_id: str, attributes: dict[str, Any] | None = None
    ) -> OptimizelyUserContext | None:
        """A user context for the official decide API; ``None`` for an invalid argument."""
        if not isinstance(user_id, str):
            self._invalid("user_id", user_id, "create_user_context")
            return None
        if attributes is not None and not isinstance(attributes, dict):
            self._invalid("attributes", attributes, "create_user_context")
            return None
        return OptimizelyUserContext(self, user_id, attributes)

    def decide(
        self,
        user_id: str,
        flag_key: str,
        attributes: dict[str, Any] | None = None,
        options: Iterable[Any] = (),
    ) -> Decision:
        """Decide one flag for the user; sends the impression the official SDK sends.

        Returns a :class:`~xpevents.Decision`; an unknown flag key or an invalid argument
        gives a disabled decision whose ``reasons`` say why.
        """
        if not isinstance(user_id, str):
            self._invalid("user_id", user_id, "decide")
            return Decision(
                flag_key=flag_key if isinstance(flag_key, str) else None,
                reasons=(f'Provided "user_id" is in an invalid format: {user_id!r}.',),
            )
        if not self._check_attributes(attributes, "decide"):
            return Decision(
                flag_key=flag_key if isinstance(flag_key, str) else None,
                user_id=user_id,
                reasons=(f'Provided "attributes" is in an invalid format: {attributes!r}.',),
            )
        return self._decide_one(user_id, attributes or {}, flag_key, options, _EMPTY, None)

    def decide_all(
        self,
        user_id: str,
        attributes: dict[str, Any] | None = None,
        options: Iterable[Any] = (),
    ) -> dict[str, Decision]:
        """Decide every flag for the user (datafile order); flag key -> decision."""
        if not isinstance(user_id, str):
            self._invalid("user_id", user_id, "decide_all")
            return {}
        if not self._check_attributes(attributes, "decide_all"):
            return {}
        return self._decide_many(user_id, attributes or {}, None, options, _EMPTY, None)

    def decide_for_keys(
        self,
        user_id: str,
        keys: Iterable[str],
        attributes: dict[str, Any] | None = None,
        options: Iterable[Any] = (),
    ) -> dict[str, Decision]:
        """Decide each flag of ``keys`` for the user; flag key -> decision."""
        if not isinstance(user_id, str):
            self._invalid("user_id", user_id, "decide_for_keys")
            return {}
        if not self._check_attributes(attributes, "decide_for_keys"):
            return {}
        return self._decide_many(user_id, attributes or {}, keys, options, _EMPTY, None)

    def _options(self, options: Iterable[Any] | None) -> frozenset[OptimizelyDecideOption]:
        if not options:
            return self._default_options
        return parse_decide_options(options, strict=self._strict) | self._default_options

    def _decide_one(
        self,
        user_id: str,
        attributes: dict[str, Any],
        key: Any,
        options: Iterable[Any] | None,
        forced_decisions: Mapping[tuple[str, str | None], str],
        user_context: OptimizelyUserContext | None,
    ) -> Decision:
        if isinstance(key, str) and self._not_ready("decide"):
            return Decision(
                flag_key=key, user_id=user_id, reasons=(_SDK_NOT_READY,), user_context=user_context
            )
        if not isinstance(key, str) or key not in self._config.flags:
            if not isinstance(key, str):
                self._invalid("flag_key", key, "decide")
            else:
                self._unknown("flag", key, "decide")
            return Decision(
                flag_key=key if isinstance(key, str) else None,
                user_id=user_id,
                reasons=(_FLAG_KEY_INVALID.format(key),),
                user_context=user_context,
            )
        opts = self._options(options)
        return self._decide_flag_key(
            user_id, attributes, self._config.flags[key], opts, forced_decisions, user_context
        )

    def _decide_many(
        self,
        user_id: str,
        attributes: dict[str, Any],
        keys: Iterable[Any] | None,
        options: Iterable[Any] | None,
        forced_decisions: Mapping[tuple[str, str | None], str],
        user_context: OptimizelyUserContext | None,
    ) -> dict[str, Decision]:
        if self._not_ready("decide_all" if keys is None else "decide_for_keys"):
            return {}
        opts = self._options(options)
        enabled_only = _ENABLED_ONLY in opts
        flags = self._config.flags
        result: dict[str, Decision] = {}
        for key in flags if keys is None else keys:
            flag = flags.get(key) if isinstance(key, str) else None
            if flag is None:
                result[key] = Decision(flag_key=key, user_id=user_id, user_context=user_context)
                continue
            decision = self._decide_flag_key(
                user_id, attributes, flag, opts, forced_decisions, user_context
            )
            if not enabled_only or decision.enabled:
                result[key] = decision
        return result

    def _decide_flag_key(
        self,
        user_id: str,
        attributes: dict[str, Any],
        flag: Flag,
        opts: frozenset[OptimizelyDecideOption],
        forced_decisions: Mapping[tuple[str, str | None], str],
        user_context: OptimizelyUserContext | None,
    ) -> Decision:
        reasons: list[str] | None = [] if _INCLUDE_REASONS in opts else None
        forced = self._forced_variations.get(user_id)
        decision = self._decider.decide_flag(
            flag,
            user_id,
            attributes,
            forced_variations=forced or _EMPTY,
            forced_decisions=forced_decisions,
            reasons=reasons,
        )
        variation = decision.variation
        experiment = decision.experiment
        enabled = variation is not None and variation.feature_enabled is True
        rule_key = experiment.key if experiment is not None else None
        source = decision.source
        dispatched = False
        if _DISABLE_EVENT not in opts and (
            source == _FEATURE_TEST or self._config.send_flag_decisions
        ):
            self._send_impression(
                experiment,
                variation,
                user_id,
                attributes,
                flag.key,
                rule_key or "",
                str(source),
                enabled,
            )
            dispatched = True
        variables = {} if _EXCLUDE_VARIABLES in opts else self._decider.variables(flag, decision)
        reason_tuple = tuple(reasons) if reasons else ()
        variation_key = variation.key if variation is not None else None
        if self._listeners[_DECISION]:
            self.notification_center._send(
                _DECISION,
                "flag",
                user_id,
                attributes,
                {
                    "flag_key": flag.key,
                    "enabled": enabled,
                    "variables": variables,
                    "variation_key": variation_key,
                    "rule_key": rule_key,
                    "reasons": list(reason_tuple),
                    "decision_event_dispatched": dispatched,
                    "experiment_id": experiment.id if experiment is not None else None,
                    "variation_id": variation.id if variation is not None else None,
                },
            )
        return Decision(
            variation_key=variation_key,
            enabled=enabled,
            variables=variables,
            rule_key=rule_key,
            flag_key=flag.key,
            user_id=user_id,
            reasons=reason_tuple,
            user_context=user_context,
        )

    # -- lifecycle ----------------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> None:
        """Flush and close the dispatcher the client created (one you passed is left open).

        Idempotent. Waits at most ``timeout`` seconds.
        """
        if self._closed:
            return
        self._closed = True
        if not self._owns_dispatcher:
            return
        close = getattr(self._dispatcher, "close", None)
        if close is None:
            return
        try:
            close(timeout)
        except Exception:
            self._log.exception("Closing the event dispatcher %r failed.", self._dispatcher)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Client(project_id={self._config.project_id!r}, "
            f"revision={self._config.revision!r}, dispatcher={self._dispatcher!r})"
        )
