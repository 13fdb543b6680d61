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
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from xpevents._internal.closing import Closing
from xpevents._version import __version__
from xpevents.client.experiments import Experiments
from xpevents.client.features import Features
from xpevents.client.flags import FlagDecisions
from xpevents.client.inputs import Inputs, check_dispatcher, load_datafile
from xpevents.client.notifications import NotificationCenter
from xpevents.client.profiles import UserProfiles, UserProfileService
from xpevents.client.reporting import Reporter
from xpevents.client.shared import Collaborators, ForcedVariations
from xpevents.client.user_context import OptimizelyUserContext
from xpevents.decide import Decision, OptimizelyDecideOption, parse_decide_options
from xpevents.decide.decider import Decider
from xpevents.events.builder import EventBuilder

if TYPE_CHECKING:
    from xpevents.decide.datafile import ProjectConfig
    from xpevents.dispatch.protocol import EventDispatcher

__all__ = ["Client"]

_log = logging.getLogger("xpevents.client")


def _default_dispatcher(event_endpoint: str | None) -> EventDispatcher:
    """The dispatcher a client creates (and owns) when none is given.

    A :class:`~xpevents.BatchDispatcher` with its defaults: Optimizely's own advice
    for production (queue, batch, retry; ``activate`` never waits on the network).
    """
    from xpevents.dispatch.batch import BatchDispatcher

    return BatchDispatcher(endpoint=event_endpoint)


class Client(Closing):
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
        user_profile_service: sticky bucketing: an object with the official
            ``lookup(user_id)`` and ``save(profile)`` (see :mod:`xpevents.profiles`), used
            for experiments exactly as optimizely-sdk uses it. Default ``None``.

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
        user_profile_service: UserProfileService | None = None,
    ) -> None:
        check_dispatcher(event_dispatcher)
        log = logger if logger is not None else _log
        strict = bool(strict)
        self._config: ProjectConfig = load_datafile(datafile, strict, log)
        decider = Decider(self._config)
        self._builder = EventBuilder(
            self._config,
            client_name=client_name,
            client_version=client_version,
            endpoint=event_endpoint,
        )
        self._default_options = parse_decide_options(default_decide_options, strict=True)
        self.notification_center = NotificationCenter()
        """Listeners for ``decision``, ``activate``, ``track`` and ``log_event``."""
        self._owns_dispatcher = event_dispatcher is None
        self._dispatcher: EventDispatcher = (
            _default_dispatcher(event_endpoint) if event_dispatcher is None else event_dispatcher
        )
        self._log = log
        self._closed = False
        self._inputs = Inputs(self._config, log, strict)
        self._report = report = Reporter(
            self._builder, self._dispatcher, self.notification_center, strict=strict, log=log
        )
        self.user_profiles = UserProfiles(user_profile_service, log)
        """Sticky bucketing: the service and its counters (``user_profiles.stats()``)."""
        forced = ForcedVariations()
        shared = Collaborators(
            self._config, decider, forced, self._inputs, report, log, self.user_profiles
        )
        self._experiments = Experiments(shared)
        self._features = Features(shared)
        self.flag_decisions = FlagDecisions(shared, default_options=self._default_options)
        """The decide API's engine, shared with the user contexts this client creates."""

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

    def get_variation(
        self, experiment_key: str, user_id: str, attributes: dict[str, Any] | None = None
    ) -> str | None:
        """The variation key ``user_id`` gets in the experiment, without sending an event.

        ``None`` when the user is not in the experiment, the experiment is not running,
        or an argument is invalid (logged).
        """
        return self._experiments.get_variation(experiment_key, user_id, attributes)

    def activate(
        self, experiment_key: str, user_id: str, attributes: dict[str, Any] | None = None
    ) -> str | None:
        """Decide the user's variation and send an impression; returns the variation key.

        ``None`` (and no event) when the user is not in the experiment, the experiment is
        not running, or an argument is invalid (logged).
        """
        return self._experiments.activate(experiment_key, user_id, attributes)

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
        event_def = self._inputs.event(event_key, user_id, attributes, event_tags)
        if event_def is not None:
            self._report.conversion(event_def, user_id, attributes, event_tags)

    def set_forced_variation(
        self, experiment_key: str, user_id: str, variation_key: str | None
    ) -> bool:
        """Force ``user_id`` into ``variation_key`` of the experiment (``None`` clears it).

        Returns whether it was done: ``False`` for an unknown experiment or variation.
        """
        return self._experiments.set_forced_variation(experiment_key, user_id, variation_key)

    def get_forced_variation(self, experiment_key: str, user_id: str) -> str | None:
        """The variation key forced with :meth:`set_forced_variation`, or ``None``."""
        return self._experiments.get_forced_variation(experiment_key, user_id)

    def is_feature_enabled(
        self, feature_key: str, user_id: str, attributes: dict[str, Any] | None = None
    ) -> bool:
        """Whether the flag is on for the user; sends the impression the official SDK sends.

        A feature test always sends an impression; a rollout (or no rule at all) sends
        one only when the datafile sets ``sendFlagDecisions``.
        """
        return self._features.is_feature_enabled(feature_key, user_id, attributes)

    def get_enabled_features(
        self, user_id: str, attributes: dict[str, Any] | None = None
    ) -> list[str]:
        """The keys of the flags enabled for the user (one :meth:`is_feature_enabled` each)."""
        return self._features.get_enabled_features(user_id, attributes)

    def get_feature_variable(
        self,
        feature_key: str,
        variable_key: str,
        user_id: str,
        attributes: dict[str, Any] | None = None,
    ) -> Any:
        """The typed value of a flag variable for the user (its default when the flag is off)."""
        return self._features.get_feature_variable(
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
        value: bool | None = self._features.get_feature_variable(
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
        value: float | None = self._features.get_feature_variable(
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
        value: int | None = self._features.get_feature_variable(
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
        value: str | None = self._features.get_feature_variable(
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
        return self._features.get_feature_variable(
            "get_feature_variable_json", feature_key, variable_key, "json", user_id, attributes
        )

    def get_all_feature_variables(
        self, feature_key: str, user_id: str, attributes: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """Every variable of the flag (key -> typed value) for the user; ``None`` if unknown."""
        return self._features.get_all_feature_variables(feature_key, user_id, attributes)

    def create_user_context(
        self, user_id: str, attributes: dict[str, Any] | None = None
    ) -> OptimizelyUserContext | None:
        """A user context for the official decide API; ``None`` for an invalid argument."""
        if not self._inputs.new_user(user_id, attributes):
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
        return self.flag_decisions.decide(user_id, flag_key, attributes, options)

    def decide_all(
        self,
        user_id: str,
        attributes: dict[str, Any] | None = None,
        options: Iterable[Any] = (),
    ) -> dict[str, Decision]:
        """Decide every flag for the user (datafile order); flag key -> decision."""
        return self.flag_decisions.decide_keys("decide_all", user_id, None, attributes, options)

    def decide_for_keys(
        self,
        user_id: str,
        keys: Iterable[str],
        attributes: dict[str, Any] | None = None,
        options: Iterable[Any] = (),
    ) -> dict[str, Decision]:
        """Decide each flag of ``keys`` for the user; flag key -> decision."""
        return self.flag_decisions.decide_keys(
            "decide_for_keys", user_id, keys, attributes, options
        )

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

    def __repr__(self) -> str:
        return (
            f"Client(project_id={self._config.project_id!r}, "
            f"revision={self._config.revision!r}, dispatcher={self._dispatcher!r})"
        )
