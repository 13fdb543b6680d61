"""Argument checks for :class:`~xpevents.Client`, and what a bad argument does.

A public method of the client never raises into the caller on bad input: the check logs
a message naming the method and the argument, and the method returns its "nothing"
value (``None``, ``False``, ``[]`` or a disabled decision). ``Client(strict=True)``
raises :class:`~xpevents.decide.InvalidInputError` (bad argument) or
:class:`~xpevents.decide.UnknownKeyError` (key not in the datafile) instead.

The resolvers (:meth:`Inputs.experiment`, :meth:`Inputs.event`, :meth:`Inputs.flag`)
check a method's arguments in a fixed order, report the first bad one, and return the
datafile object the key names. When every argument is good they make no call: they
run on every ``activate``, ``track`` and ``is_feature_enabled``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from xpevents.decide import InvalidInputError, UnknownKeyError
from xpevents.decide.datafile import load_config
from xpevents.errors import ConfigError, DatafileError

if TYPE_CHECKING:
    from xpevents.decide.datafile import EventDef, Experiment, Flag, ProjectConfig

__all__ = ["Inputs", "check_dispatcher", "load_datafile"]


def check_dispatcher(event_dispatcher: object) -> None:
    """Refuse, at construction, a dispatcher the client could never send to."""
    if event_dispatcher is not None and not callable(
        getattr(event_dispatcher, "dispatch_event", None)
    ):
        hint = ""
        if isinstance(event_dispatcher, str) and "://" in event_dispatcher:
            # Client(datafile, "http://host/v1/events"): the 2nd positional argument is
            # the dispatcher; the endpoint is a keyword
            hint = (
                f"did you mean event_endpoint={event_dispatcher!r}? (the second positional "
                "argument is the dispatcher); otherwise "
            )
        raise ConfigError(
            f"event_dispatcher {event_dispatcher!r} has no dispatch_event(event) method; "
            f"{hint}pass an xpevents dispatcher, any object with dispatch_event, or None"
        )


def load_datafile(
    datafile: str | bytes | Mapping[str, Any], strict: bool, log: logging.Logger
) -> ProjectConfig:
    """The datafile's config; one the official SDK would refuse raises in strict mode.

    Otherwise it is logged and kept: the client then decides nothing and sends nothing
    (:meth:`Inputs.ready` says so at each call), as optimizely-sdk does.
    """
    config = load_config(datafile)
    if not config.usable:
        message = (
            "the datafile cannot be used (" + "; ".join(config.warnings) + "); "
            "like optimizely-sdk, the client will decide nothing and send no events"
        )
        if strict:
            raise DatafileError(message)
        log.error(message)
    return config


class ErrorHandler(Protocol):
    """The official SDK's error handler interface."""

    def handle_error(self, error: Exception) -> object: ...


def check_error_handler(handler: object) -> ErrorHandler | None:
    """``None`` or an object with ``handle_error(error)``; else ConfigError."""
    if handler is None or callable(getattr(handler, "handle_error", None)):
        return handler  # type: ignore[return-value]
    raise ConfigError(
        f"Client(error_handler={handler!r}): expected an object with handle_error(error), "
        "such as optimizely's NoOpErrorHandler or RaiseExceptionErrorHandler"
    )


def adapt_logger(logger: object) -> logging.Logger | None:
    """A ``logging.Logger``, or the one inside an official SDK logger (``.logger``)."""
    if logger is None or isinstance(logger, logging.Logger):
        return logger
    inner = getattr(logger, "logger", None)
    if isinstance(inner, logging.Logger):
        return inner
    raise ConfigError(
        f"Client(logger={logger!r}): expected a logging.Logger (or an optimizely-sdk logger "
        "such as SimpleLogger, which wraps one)"
    )


class Inputs:
    """The checks, bound to one config, logger and strict flag."""

    __slots__ = ("_error_handler", "_events", "_experiments", "_flags", "_log", "_usable", "strict")

    def __init__(
        self,
        config: ProjectConfig,
        log: logging.Logger,
        strict: bool,
        error_handler: ErrorHandler | None = None,
    ) -> None:
        self._log = log
        self._error_handler = error_handler
        self.strict = strict
        """Raise instead of logging."""
        self._usable = config.usable
        # The official key map: top-level and group experiments and rollout rules.
        self._experiments: Mapping[str, Experiment] = config.experiments
        self._events: Mapping[str, EventDef] = config.events
        self._flags: Mapping[str, Flag] = config.flags

    def invalid(self, argument: str, value: object, method: str) -> None:
        """Report an argument of the wrong type or empty."""
        message = f'{method}: provided "{argument}" is in an invalid format: {value!r}.'
        if self.strict:
            raise InvalidInputError(message)
        self._log.error(message)
        self._handle(InvalidInputError(message))

    def unknown(self, what: str, key: str, method: str) -> None:
        """Report a key the datafile does not have."""
        message = f'{method}: {what} key "{key}" is not in the datafile.'
        if self.strict:
            raise UnknownKeyError(message)
        self._log.error(message)  # as optimizely-sdk: a typo'd key is loud
        self._handle(UnknownKeyError(message))

    def _handle(self, error: Exception) -> None:
        """The official ``error_handler.handle_error(error)`` (it may raise, as the official
        ``RaiseExceptionErrorHandler`` does: that is its purpose)."""
        if self._error_handler is not None:
            self._error_handler.handle_error(error)

    def wrong_variable_type(self, method: str, variable_key: str, actual: str, asked: str) -> None:
        """Report a typed getter called for a variable of another type."""
        message = (
            f'{method}: variable "{variable_key}" is of type "{actual}", '
            f'not "{asked}"; use the matching getter.'
        )
        if self.strict:
            raise InvalidInputError(message)
        self._log.warning(message)

    def ready(self, method: str) -> bool:
        """Whether the datafile is usable; logs (once per call) when it is not."""
        if self._usable:
            return True
        self._log.error('%s: the datafile cannot be used; failing "%s".', method, method)
        return False

    def attributes(self, attributes: Any, method: str) -> bool:
        """Whether ``attributes`` is a dict or empty (``None`` included)."""
        if attributes and not isinstance(attributes, dict):
            self.invalid("attributes", attributes, method)
            return False
        return True

    def user(self, user_id: Any, attributes: Any, method: str) -> bool:
        """Whether ``user_id`` is a string and ``attributes`` a dict or empty."""
        if not isinstance(user_id, str):
            self.invalid("user_id", user_id, method)
            return False
        return self.attributes(attributes, method)

    def new_user(self, user_id: Any, attributes: Any) -> bool:
        """The checks of ``create_user_context``: stricter, attributes ``None`` or a dict."""
        if not isinstance(user_id, str):
            self.invalid("user_id", user_id, "create_user_context")
        elif attributes is not None and not isinstance(attributes, dict):
            self.invalid("attributes", attributes, "create_user_context")
        else:
            return True
        return False

    def experiment(
        self, method: str, experiment_key: Any, user_id: Any, attributes: Any = None
    ) -> Experiment | None:
        """The experiment ``experiment_key`` names, after checking the other arguments.

        The attributes are checked last, once the experiment is known.
        """
        if not isinstance(experiment_key, str) or not experiment_key:
            self.invalid("experiment_key", experiment_key, method)
        elif not isinstance(user_id, str):
            self.invalid("user_id", user_id, method)
        elif self._usable or self.ready(method):
            experiment = self._experiments.get(experiment_key)
            if experiment is None:
                self.unknown("experiment", experiment_key, method)
            elif attributes and not isinstance(attributes, dict):
                self.invalid("attributes", attributes, method)
            else:
                return experiment
        return None

    def event(
        self, event_key: Any, user_id: Any, attributes: Any, event_tags: Any
    ) -> EventDef | None:
        """The event ``track`` sends, after checking all its arguments."""
        if not isinstance(event_key, str) or not event_key:
            self.invalid("event_key", event_key, "track")
        elif not isinstance(user_id, str):
            self.invalid("user_id", user_id, "track")
        elif attributes and not isinstance(attributes, dict):
            self.invalid("attributes", attributes, "track")
        elif event_tags and not isinstance(event_tags, dict):
            self.invalid("event_tags", event_tags, "track")
        elif self._usable or self.ready("track"):
            event = self._events.get(event_key)
            if event is None:
                self.unknown("event", event_key, "track")
            elif event_tags:
                self._revenue(event_tags.get("revenue"))
            return event
        return None

    def _revenue(self, revenue: Any) -> None:
        """A ``revenue`` tag that is not an integer is not sent as revenue: say so."""
        if revenue is None or (isinstance(revenue, int) and not isinstance(revenue, bool)):
            return
        message = (
            f"track: revenue must be an integer number of cents (1299 for $12.99); got "
            f"{revenue!r}, sent as a tag only, not as revenue"
        )
        if self.strict:
            raise InvalidInputError(message)
        self._log.warning(message)

    def flag(self, method: str, feature_key: Any, user_id: Any, attributes: Any) -> Flag | None:
        """The flag ``feature_key`` names, after checking the key, user id and attributes."""
        if not isinstance(feature_key, str) or not feature_key:
            self.invalid("feature_key", feature_key, method)
        elif not isinstance(user_id, str):
            self.invalid("user_id", user_id, method)
        elif attributes and not isinstance(attributes, dict):
            self.invalid("attributes", attributes, method)
        elif self._usable or self.ready(method):
            flag = self._flags.get(feature_key)
            if flag is None:
                self.unknown("feature flag", feature_key, method)
            return flag
        return None
