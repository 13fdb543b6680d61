"""The client's datafile over time: one engine per revision, swapped in whole.

An :class:`Engine` is everything a call decides, checks and reports with for one
:class:`~xpevents.decide.datafile.ProjectConfig`: the decider, the event builder, the
argument checks and the API parts. :class:`Lifecycle` builds a new engine each time the
config manager swaps a datafile in, and hands it to the client in one assignment. A
public method reads the client's engine once, at its start, and uses it to the end: a
decision never mixes two revisions, and the decision path takes no lock.

What outlives a swap: the dispatcher, the notification center and the forced variations
(keyed by experiment and variation *keys*, so a forced variation applies again in the new
revision where both keys still exist, and is ignored where they do not); a user
context's forced decisions live in the user context and are looked up by key too.

Before the first datafile, the engine is :func:`pending_engine`: the first call waits
(once, as the manager allows: ``blocking_timeout``) for the first fetch, and then either
decides with the datafile that arrived or answers "nothing" (``None``, ``False``, a
disabled decision), sends no event and logs one line saying the datafile is missing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

import msgspec

from xpevents._internal import forking
from xpevents.client.experiments import Experiments
from xpevents.client.features import Features
from xpevents.client.flags import FlagDecisions
from xpevents.client.inputs import Inputs
from xpevents.client.notifications import NotificationCenter, NotificationType
from xpevents.client.optimizely_config import OptimizelyConfig, optimizely_config
from xpevents.client.reporting import Reporter
from xpevents.client.shared import Collaborators, ForcedVariations
from xpevents.config.base import ConfigStats
from xpevents.decide.datafile import load_config
from xpevents.decide.decider import Decider
from xpevents.events.builder import EventBuilder

if TYPE_CHECKING:
    from xpevents.client.inputs import ErrorHandler
    from xpevents.client.profiles import UserProfiles
    from xpevents.client.user_context import OptimizelyUserContext
    from xpevents.config.base import ConfigManager
    from xpevents.decide import Decision, OptimizelyDecideOption
    from xpevents.decide.datafile import ProjectConfig
    from xpevents.dispatch.protocol import EventDispatcher

__all__ = ["CurrentFlags", "Engine", "EngineSettings", "Lifecycle", "build_engine"]

_CONFIG_UPDATE = NotificationType.OPTIMIZELY_CONFIG_UPDATE
_EMPTY_DATAFILE = (
    b'{"version": "4", "accountId": "", "projectId": "", "revision": "", "groups": [], '
    b'"experiments": [], "events": [], "audiences": [], "attributes": []}'
)
"""The stand-in before the first datafile: complete, so loading it warns about nothing."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSettings:
    """What every engine of one client is built with (it does not change with the datafile)."""

    dispatcher: EventDispatcher
    center: NotificationCenter
    forced: ForcedVariations
    log: logging.Logger
    strict: bool
    client_name: str
    client_version: str
    endpoint: str | None
    default_options: frozenset[OptimizelyDecideOption]
    profiles: UserProfiles
    """Sticky bucketing (one per client, shared by every revision's engine)."""
    error_handler: ErrorHandler | None = None
    """The official ``error_handler`` (``handle_error(error)``), told of every bad input."""
    decider_options: Mapping[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for :class:`~xpevents.decide.decider.Decider`."""


class Engine:
    """One revision's decider, builder, checks and API parts (never changed once built)."""

    __slots__ = (
        "builder",
        "config",
        "datafile",
        "experiments",
        "features",
        "flags",
        "inputs",
        "optimizely_config",
        "pending",
        "report",
    )

    def __init__(
        self,
        config: ProjectConfig | None,
        builder: EventBuilder,
        inputs: Inputs,
        report: Reporter,
        experiments: Experiments,
        features: Features,
        flags: FlagDecisions,
        *,
        pending: bool = False,
    ) -> None:
        self.config = config
        """The config, or ``None`` for the engine used before the first datafile."""
        self.builder = builder
        self.inputs = inputs
        self.report = report
        self.experiments = experiments
        self.features = features
        self.flags = flags
        self.pending = pending
        """Its parts ask the config manager first (before the first datafile, after a fork)."""
        self.datafile: bytes | None = None
        """The JSON text of ``config``, when the manager gives it."""
        self.optimizely_config: OptimizelyConfig | None = None
        """``get_optimizely_config()``'s answer, built at the first call."""


def build_engine(
    config: ProjectConfig, settings: EngineSettings, *, inputs: Inputs | None = None
) -> Engine:
    """The engine of ``config``."""
    builder = EventBuilder(
        config,
        client_name=settings.client_name,
        client_version=settings.client_version,
        endpoint=settings.endpoint,
    )
    if inputs is None:
        inputs = Inputs(config, settings.log, settings.strict, settings.error_handler)
    report = Reporter(
        builder, settings.dispatcher, settings.center, strict=settings.strict, log=settings.log
    )
    decider = Decider(config, **settings.decider_options)
    shared = Collaborators(
        config, decider, settings.forced, inputs, report, settings.log, settings.profiles
    )
    return Engine(
        config,
        builder,
        inputs,
        report,
        Experiments(shared),
        Features(shared),
        FlagDecisions(shared, default_options=settings.default_options),
    )


class _NoDatafileInputs(Inputs):
    """The checks of the engine without a datafile: every call fails, with one log line."""

    __slots__ = ("_source",)

    def __init__(self, config: ProjectConfig, settings: EngineSettings, source: str) -> None:
        super().__init__(config, settings.log, settings.strict, settings.error_handler)
        self._source = source

    def ready(self, method: str) -> bool:
        self._log.error(
            '%s: no datafile yet from %s (no decision, no event until one arrives); failing "%s".',
            method,
            self._source,
            method,
        )
        return False


class _FirstCall:
    """A part of the engine used before the first datafile: wait once, then forward.

    ``part.method(...)`` lets the lifecycle wait for the first fetch (once, as the config
    manager allows), then calls the same method on the engine in place by then: the
    datafile's, or the one that answers "no datafile".
    """

    __slots__ = ("_lifecycle", "_name")

    def __init__(self, lifecycle: Lifecycle, name: str) -> None:
        self._lifecycle = lifecycle
        self._name = name

    def __getattr__(self, method: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            engine = self._lifecycle.first_engine()
            return getattr(getattr(engine, self._name), method)(*args, **kwargs)

        return call


class Lifecycle:
    """Follows a config manager: builds an engine per new config and installs it.

    Args:
        manager: where configs come from.
        settings: what every engine is built with.
        install: ``install(engine)`` makes it the client's (one assignment).

    Fork rule: in a forked child the client's first call asks the manager for its config
    once (which starts the child's own poller, see
    :class:`~xpevents.config.PollingConfigManager`), deciding meanwhile with the
    datafile inherited from the parent.
    """

    def __init__(
        self,
        manager: ConfigManager,
        settings: EngineSettings,
        install: Callable[[Engine], None],
    ) -> None:
        self.manager = manager
        self.settings = settings
        self._install = install
        self._lock = threading.Lock()
        self.source = str(getattr(manager, "url", None) or type(manager).__name__)
        empty = msgspec.structs.replace(load_config(_EMPTY_DATAFILE), usable=False)
        self._no_datafile = build_engine(
            empty, settings, inputs=_NoDatafileInputs(empty, settings, self.source)
        )
        self._no_datafile.config = None
        self._parked: Engine = self._no_datafile
        self.engine: Engine = self._pending(None)
        install(self.engine)
        manager.add_listener(self._on_config)
        current = _peek(manager)
        if current is not None:
            self._adopt(current, notify=False)
        forking.track(self, forking.Stage.CONFIG)

    def _pending(self, config: ProjectConfig | None) -> Engine:
        base = self._parked
        return Engine(
            config,
            base.builder,
            base.inputs,
            base.report,
            cast(Experiments, _FirstCall(self, "experiments")),
            cast(Features, _FirstCall(self, "features")),
            cast(FlagDecisions, _FirstCall(self, "flags")),
            pending=True,
        )

    def first_engine(self) -> Engine:
        """The engine to use once the manager was asked (the datafile's, or "none yet")."""
        engine = self.engine
        if engine.pending:
            config = self.manager.get_config()  # waits once, as the manager allows
            self._adopt(config)
            engine = self.engine
        return self._no_datafile if engine.pending else engine

    def _on_config(self, config: ProjectConfig) -> None:
        self._adopt(config)

    def _adopt(self, config: ProjectConfig | None, *, notify: bool = True) -> None:
        with self._lock:
            latest = _peek(self.manager) or config  # never go back to an older one
            current = self.engine
            if latest is None or (current.config is latest and not current.pending):
                return
            parked = self._parked
            if parked.config is latest:
                engine = parked
            else:
                engine = build_engine(latest, self.settings)
                engine.datafile = _text(self.manager, latest)
            self._parked = self.engine = engine
            self._install(engine)
            changed = current.config is not latest
        if notify and changed and self.settings.center.has_listeners(_CONFIG_UPDATE):
            self.settings.center.send_notifications(_CONFIG_UPDATE)

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        if not self.engine.pending:
            self.engine = self._pending(self.engine.config)
            self._install(self.engine)

    def optimizely_config(self, engine: Engine) -> OptimizelyConfig | None:
        """The official ``OptimizelyConfig`` of ``engine``'s datafile (built once)."""
        if engine.config is None:
            self.settings.log.error(
                'Invalid config. Optimizely instance is not valid. Failing "get_optimizely_config".'
            )
            return None
        if engine.optimizely_config is None:
            if engine.datafile is None:
                self.settings.log.error(
                    "get_optimizely_config: the config manager %r does not give the datafile's "
                    "text (give it a datafile_of(config) method)",
                    self.manager,
                )
                return None
            engine.optimizely_config = optimizely_config(engine.datafile)
        return engine.optimizely_config

    @property
    def is_valid(self) -> bool:
        """Whether a usable datafile is in place."""
        config = self.engine.config
        return config is not None and config.usable

    def stats(self) -> ConfigStats:
        """The manager's stats (a manager without ``stats()`` gets a minimal snapshot)."""
        stats = getattr(self.manager, "stats", None)
        if callable(stats):
            result = stats()
            if isinstance(result, ConfigStats):
                return result
        config = self.engine.config
        return ConfigStats(
            source=self.source,
            revision=None if config is None else config.revision,
            ready=config is not None,
        )

    def close(self) -> None:
        """Stop following the manager and close it (as the official SDK stops it). Never raises."""
        forking.untrack(self)
        try:
            self.manager.close()
        except Exception:
            self.settings.log.exception("Closing the config manager %r failed.", self.manager)


class _HasEngine(Protocol):
    _engine: Engine


class CurrentFlags:
    """``client.flag_decisions``: the decide API of whichever engine is current.

    A user context keeps this object, so a user context created before a swap decides
    with the new datafile after it (each call reads the engine once).
    """

    __slots__ = ("_client",)

    def __init__(self, client: _HasEngine) -> None:
        self._client = client

    def decide_one(
        self,
        user_id: str,
        attributes: dict[str, Any],
        key: Any,
        options: Iterable[Any] | None,
        forced_decisions: Mapping[tuple[str, str | None], str],
        user_context: OptimizelyUserContext | None,
    ) -> Decision:
        """See :meth:`xpevents.client.flags.FlagDecisions.decide_one`."""
        return self._client._engine.flags.decide_one(
            user_id, attributes, key, options, forced_decisions, user_context
        )

    def decide_many(
        self,
        user_id: str,
        attributes: dict[str, Any],
        keys: Iterable[Any] | None,
        options: Iterable[Any] | None,
        forced_decisions: Mapping[tuple[str, str | None], str],
        user_context: OptimizelyUserContext | None,
    ) -> dict[str, Decision]:
        """See :meth:`xpevents.client.flags.FlagDecisions.decide_many`."""
        return self._client._engine.flags.decide_many(
            user_id, attributes, keys, options, forced_decisions, user_context
        )


def _text(manager: ConfigManager, config: ProjectConfig) -> bytes | None:
    """The JSON text of ``config`` (``datafile_of(config)`` when the manager has one)."""
    datafile_of = getattr(manager, "datafile_of", None)
    if callable(datafile_of):
        text = datafile_of(config)
        return text if isinstance(text, bytes) else None
    return None


def _peek(manager: ConfigManager) -> ProjectConfig | None:
    """The manager's config without waiting (``config_now()`` when it has one)."""
    now = getattr(manager, "config_now", None)
    if callable(now):
        return cast("ProjectConfig | None", now())
    return manager.get_config()
