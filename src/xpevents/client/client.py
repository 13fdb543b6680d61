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
from xpevents.client.inputs import adapt_logger, check_dispatcher, check_error_handler
from xpevents.client.lifecycle import CurrentFlags, Engine, EngineSettings, Lifecycle
from xpevents.client.notifications import NotificationCenter
from xpevents.client.profiles import UserProfiles, UserProfileService
from xpevents.client.shared import ForcedVariations
from xpevents.client.sources import choose_config_manager
from xpevents.client.user_context import OptimizelyUserContext
from xpevents.client.variables import FeatureVariables
from xpevents.decide import Decision, OptimizelyDecideOption, parse_decide_options

if TYPE_CHECKING:
    import os

    from xpevents.client.optimizely_config import OptimizelyConfig
    from xpevents.client.user_context import FlagDecider
    from xpevents.config.base import ConfigManager, ConfigStats
    from xpevents.decide.datafile import ProjectConfig
    from xpevents.dispatch.protocol import EventDispatcher
    from xpevents.events.builder import EventBuilder

__all__ = ["Client"]

_log = logging.getLogger("xpevents.client")


def _default_dispatcher(event_endpoint: str | None) -> EventDispatcher:
    """The dispatcher a client creates (and owns) when none is given.

    A :class:`~xpevents.BatchDispatcher` with its defaults: Optimizely's own advice
    for production (queue, batch, retry; ``activate`` never waits on the network).
    """
    from xpevents.dispatch.batch import BatchDispatcher

    return BatchDispatcher(endpoint=event_endpoint)


class Client(FeatureVariables, Closing):
    """Decides variations and sends impressions and conversions for one project.

    Where the datafile comes from (see ``docs/datafile.md``): ``Client(datafile)`` uses
    that one for ever; ``Client(sdk_key=...)`` fetches it from the CDN and polls it (a
    ``datafile`` given too is the fallback until the first fetch succeeds);
    ``Client(config_manager=...)`` follows any :class:`~xpevents.config.ConfigManager`.
    A new datafile replaces the current one between calls, never during one: each call
    decides and reports with one revision from start to finish.

    Args:
        datafile: the project datafile as JSON text (``str`` or ``bytes``), a decoded
            ``dict``, or a ``pathlib.Path`` to read it from (a str that looks like a
            path raises :class:`~xpevents.DatafileError` saying so). Given alone, a
            datafile that cannot be decoded raises :class:`~xpevents.DatafileError`
            here, naming the JSON path of the problem.
        event_dispatcher: anything with ``dispatch_event(event)``. Default ``None``: the
            client creates its own :class:`~xpevents.BatchDispatcher` (non-blocking,
            batching, retrying) and flushes and closes it in :meth:`close`. A
            dispatcher you pass is never closed by the client.
        sdk_key: fetch the datafile from
            ``https://cdn.optimizely.com/datafiles/{sdk_key}.json`` and poll it every 5
            minutes (a :class:`~xpevents.config.PollingConfigManager` with its defaults;
            pass your own ``config_manager`` for other options). Default ``None``.
        datafile_access_token: fetch the authenticated datafile
            (``https://config.optimizely.com/datafiles/auth/{sdk_key}.json``, sent as
            ``Authorization: Bearer``). Needs ``sdk_key``. Default ``None``.
        config_manager: follow this config manager; the client closes it in
            :meth:`close`, as the official SDK stops its config manager. Default ``None``.
        datafile_cache: with ``sdk_key``: a file keeping the last good datafile (written
            atomically, mode 0600), read at start when the CDN is unreachable. Default
            ``None``.
        event_endpoint: send events here instead of the event API
            (``https://logx.optimizely.com/v1/events``, or the EU endpoint when the
            datafile's region is ``EU``). Default ``None``.
        client_name: ``client_name`` in every payload. Default ``"xpevents"``.
        client_version: ``client_version`` in every payload. Default the package version.
        strict: raise :class:`~xpevents.decide.InvalidInputError` (bad argument),
            :class:`~xpevents.decide.UnknownKeyError` (key not in the datafile) or
            :class:`~xpevents.DispatchError` (the dispatcher raised) instead of logging.
            Default ``False``, which is what production wants.
        logger: where the client logs: a ``logging.Logger``, or an optimizely-sdk logger
            (``SimpleLogger``..., whose wrapped logger is used). Default the
            ``xpevents.client`` logger.
        error_handler: the official interface, ``handle_error(error)``: called with an
            :class:`~xpevents.decide.InvalidInputError` or
            :class:`~xpevents.decide.UnknownKeyError` for every bad input (after the log
            line); optimizely's ``RaiseExceptionErrorHandler`` makes those raise. Default
            ``None``.
        default_decide_options: decide options applied to every ``decide*`` call (enum
            members or the official strings). Default none.
        user_profile_service: sticky bucketing: an object with the official
            ``lookup(user_id)`` and ``save(profile)`` (see :mod:`xpevents.profiles`), used
            for experiments exactly as optimizely-sdk uses it. Default ``None``.

    Before the first datafile (``sdk_key`` without a fallback, CDN not answered yet) the
    first call waits once for the first fetch (the manager's ``blocking_timeout``, 10 s by
    default, as the official SDK); until a datafile arrives every call returns its
    "nothing" value (``None``, ``False``, a disabled decision), sends no event and logs
    one line saying so; :attr:`is_valid` is ``False``.

    Raises:
        ConfigError: an argument is invalid, or two contradict each other; the message
            names them.

    Thread-safe, forced variations and user-context forced decisions included. Use it as
    a context manager, or call :meth:`close`, to flush and close what it owns.
    """

    def __init__(
        self,
        datafile: str | bytes | Mapping[str, Any] | os.PathLike[str] | None = None,
        event_dispatcher: EventDispatcher | None = None,
        *,
        sdk_key: str | None = None,
        datafile_access_token: str | None = None,
        config_manager: ConfigManager | None = None,
        datafile_cache: str | os.PathLike[str] | None = None,
        event_endpoint: str | None = None,
        client_name: str = "xpevents",
        client_version: str = __version__,
        strict: bool = False,
        logger: logging.Logger | Any | None = None,
        default_decide_options: Iterable[Any] = (),
        user_profile_service: UserProfileService | None = None,
        error_handler: Any = None,
    ) -> None:
        check_dispatcher(event_dispatcher)
        log = adapt_logger(logger) or _log
        error_handler = check_error_handler(error_handler)
        strict = bool(strict)
        manager = choose_config_manager(
            datafile=datafile,
            sdk_key=sdk_key,
            datafile_access_token=datafile_access_token,
            config_manager=config_manager,
            datafile_cache=datafile_cache,
            strict=strict,
            log=log,
        )
        self._default_options = parse_decide_options(default_decide_options, strict=True)
        self.notification_center = NotificationCenter()
        """Listeners for ``decision``, ``activate``, ``track``, ``log_event`` and
        ``optimizely_config_update``."""
        self._owns_dispatcher = event_dispatcher is None
        self._dispatcher: EventDispatcher = (
            _default_dispatcher(event_endpoint) if event_dispatcher is None else event_dispatcher
        )
        self._log = log
        self._closed = False
        self.user_profiles = UserProfiles(user_profile_service, log)
        """Sticky bucketing: the service and its counters (``user_profiles.stats()``)."""
        settings = EngineSettings(
            dispatcher=self._dispatcher,
            center=self.notification_center,
            forced=ForcedVariations(),
            log=log,
            strict=strict,
            client_name=client_name,
            client_version=client_version,
            endpoint=event_endpoint,
            default_options=self._default_options,
            profiles=self.user_profiles,
            error_handler=error_handler,
        )
        self._engine: Engine
        self._lifecycle = Lifecycle(manager, settings, self._install)
        self.flag_decisions: FlagDecider = CurrentFlags(self)
        """The decide API's engine (of the current datafile), shared with user contexts."""

    def _install(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def config(self) -> ProjectConfig | None:
        """The current project config (read-only), ``None`` before the first datafile."""
        return self._engine.config

    @property
    def config_manager(self) -> ConfigManager:
        """Where the client's datafiles come from."""
        return self._lifecycle.manager

    @property
    def is_valid(self) -> bool:
        """Whether the client has a usable datafile (``False`` before the first one)."""
        return self._lifecycle.is_valid

    def get_optimizely_config(self) -> OptimizelyConfig | None:
        """The official ``OptimizelyConfig`` of the current datafile (``None`` before one).

        Experiments, flags with their rules and variables, attributes, audiences, events,
        ``sdk_key``, ``environment_key``, ``revision`` and ``get_datafile()``; built once
        per revision. See :mod:`xpevents.client.optimizely_config`.
        """
        engine = self._engine
        if engine.pending:
            engine = self._lifecycle.first_engine()
        return self._lifecycle.optimizely_config(engine)

    def config_stats(self) -> ConfigStats:
        """The config manager's state: revision, fetches, 304s, changes, failures, times."""
        return self._lifecycle.stats()

    @property
    def event_dispatcher(self) -> EventDispatcher:
        """The dispatcher events are handed to."""
        return self._dispatcher

    @property
    def event_builder(self) -> EventBuilder:
        """The builder that turns impressions and conversions into payloads (current datafile)."""
        return self._engine.builder

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
        return self._engine.experiments.get_variation(experiment_key, user_id, attributes)

    def activate(
        self, experiment_key: str, user_id: str, attributes: dict[str, Any] | None = None
    ) -> str | None:
        """Decide the user's variation and send an impression; returns the variation key.

        ``None`` (and no event) when the user is not in the experiment, the experiment is
        not running, or an argument is invalid (logged).
        """
        return self._engine.experiments.activate(experiment_key, user_id, attributes)

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
        engine = self._engine
        if engine.pending:
            engine = self._lifecycle.first_engine()
        event_def = engine.inputs.event(event_key, user_id, attributes, event_tags)
        if event_def is not None:
            engine.report.conversion(event_def, user_id, attributes, event_tags)

    def set_forced_variation(
        self, experiment_key: str, user_id: str, variation_key: str | None
    ) -> bool:
        """Force ``user_id`` into ``variation_key`` of the experiment (``None`` clears it).

        Returns whether it was done: ``False`` for an unknown experiment or variation.
        """
        return self._engine.experiments.set_forced_variation(experiment_key, user_id, variation_key)

    def get_forced_variation(self, experiment_key: str, user_id: str) -> str | None:
        """The variation key forced with :meth:`set_forced_variation`, or ``None``."""
        return self._engine.experiments.get_forced_variation(experiment_key, user_id)

    def is_feature_enabled(
        self, feature_key: str, user_id: str, attributes: dict[str, Any] | None = None
    ) -> bool:
        """Whether the flag is on for the user; sends the impression the official SDK sends.

        A feature test always sends an impression; a rollout (or no rule at all) sends
        one only when the datafile sets ``sendFlagDecisions``.
        """
        return self._engine.features.is_feature_enabled(feature_key, user_id, attributes)

    def get_enabled_features(
        self, user_id: str, attributes: dict[str, Any] | None = None
    ) -> list[str]:
        """The keys of the flags enabled for the user (one :meth:`is_feature_enabled` each)."""
        return self._engine.features.get_enabled_features(user_id, attributes)

    def get_all_feature_variables(
        self, feature_key: str, user_id: str, attributes: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """Every variable of the flag (key -> typed value) for the user; ``None`` if unknown."""
        return self._engine.features.get_all_feature_variables(feature_key, user_id, attributes)

    def create_user_context(
        self, user_id: str, attributes: dict[str, Any] | None = None
    ) -> OptimizelyUserContext | None:
        """A user context for the official decide API; ``None`` for an invalid argument."""
        if not self._engine.inputs.new_user(user_id, attributes):
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
        return self._engine.flags.decide(user_id, flag_key, attributes, options)

    def decide_all(
        self,
        user_id: str,
        attributes: dict[str, Any] | None = None,
        options: Iterable[Any] = (),
    ) -> dict[str, Decision]:
        """Decide every flag for the user (datafile order); flag key -> decision."""
        return self._engine.flags.decide_keys("decide_all", user_id, None, attributes, options)

    def decide_for_keys(
        self,
        user_id: str,
        keys: Iterable[str],
        attributes: dict[str, Any] | None = None,
        options: Iterable[Any] = (),
    ) -> dict[str, Decision]:
        """Decide each flag of ``keys`` for the user; flag key -> decision."""
        return self._engine.flags.decide_keys("decide_for_keys", user_id, keys, attributes, options)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the config manager; flush and close the dispatcher the client created (one
        you passed is left open).

        Idempotent. Waits at most ``timeout`` seconds.
        """
        if self._closed:
            return
        self._closed = True
        self._lifecycle.close()
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
        config = self._engine.config
        if config is None:
            source = self._lifecycle.source
            return f"Client(no datafile yet from {source}, dispatcher={self._dispatcher!r})"
        return (
            f"Client(project_id={config.project_id!r}, "
            f"revision={config.revision!r}, dispatcher={self._dispatcher!r})"
        )
