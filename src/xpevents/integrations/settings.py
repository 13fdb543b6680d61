"""One set of options for every framework integration, and what they build.

Each framework reads its own configuration (``settings.XPEVENTS`` in Django,
``app.config["XPEVENTS_..."]`` in Flask, keyword arguments elsewhere) into
:class:`Settings`, and :func:`build` turns it into a :class:`Wiring`: a
:class:`~xpevents.Client` over a dispatcher it owns, closed with a deadline.

Options (names in lower case here; Django and Flask spell them in upper case):

==================  =========  ===========================================================
option              default    meaning
==================  =========  ===========================================================
``datafile``        none       the datafile: JSON text, bytes or a dict
``datafile_path``   none       a file holding the datafile (not both)
``sdk_key``         none       fetch the datafile from the CDN and poll it (a datafile: fallback)
``endpoint``        none       where events go (``XPEVENTS_ENDPOINT``, else each event's URL)
``spool``           none       ``"memory://"`` (default), ``"sqlite:///path.db"``, ``"redis://…"``
``dispatcher``      ``{}``     more dispatcher options (``batch_size``, ``flush_interval``…)
``client``          ``{}``     more :class:`~xpevents.Client` options (``client_name``…)
``flush_timeout``   ``5.0``    seconds the flush at shutdown (or at exit) may take
==================  =========  ===========================================================
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from xpevents._internal.names import unknown as unknown_names
from xpevents.client.client import Client
from xpevents.dispatch.aio import AsyncDispatcher
from xpevents.dispatch.batch import BatchDispatcher
from xpevents.errors import ConfigError
from xpevents.stats import DispatchOutcome

__all__ = ["Settings", "Wiring", "build"]

logger = logging.getLogger("xpevents.integrations")

DEFAULT_FLUSH_TIMEOUT = 5.0
"""Seconds a shutdown (or exit) flush may take when ``flush_timeout`` is not given."""

_NAMES = (
    "datafile",
    "datafile_path",
    "sdk_key",
    "endpoint",
    "spool",
    "dispatcher",
    "client",
    "flush_timeout",
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Validated integration options (see the module docstring for each one).

    ``source`` says where they came from (``settings.XPEVENTS``), for error messages.
    """

    datafile: str | bytes | Mapping[str, Any] | None = None
    datafile_path: str | None = None
    sdk_key: str | None = None
    endpoint: str | None = None
    spool: str | None = None
    dispatcher: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    client: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    flush_timeout: float = DEFAULT_FLUSH_TIMEOUT
    source: str = "xpevents settings"

    @classmethod
    def from_mapping(
        cls,
        options: Mapping[str, Any],
        *,
        source: str,
        spell: Callable[[str], str] = str,
    ) -> Settings:
        """Read options from ``options``, whose keys are ``spell(name)`` for each name.

        Raises:
            ConfigError: an unknown key, a missing or doubled datafile, or a value of the
                wrong type; the message names the key as the user wrote it.
        """
        if not isinstance(options, Mapping):
            raise ConfigError(f"{source}: expected a dict of options, got {options!r}")
        known = {spell(name): name for name in _NAMES}
        unknown = sorted(str(key) for key in options if key not in known)
        if unknown:
            problem = unknown_names("option", unknown, known)
            raise ConfigError(f"{source}: {problem}; see docs/integrations.md")
        values = {known[key]: value for key, value in options.items()}
        return cls(**values, source=source).checked(spell)

    def checked(self, spell: Callable[[str], str] = str) -> Settings:
        """Return ``self`` after checking every field; raise :class:`ConfigError` if not."""
        where = self.source

        def fail(name: str, expected: str) -> ConfigError:
            value = getattr(self, name)
            return ConfigError(f"{where}[{spell(name)!r}] = {value!r}: expected {expected}")

        self._check_source(spell)
        if self.datafile is not None and not isinstance(self.datafile, str | bytes | Mapping):
            raise fail("datafile", "JSON text, bytes or a dict")
        for name in ("datafile_path", "sdk_key", "endpoint", "spool"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise fail(name, "a string")
        for name in ("dispatcher", "client"):
            if not isinstance(getattr(self, name), Mapping):
                raise fail(name, "a dict of keyword arguments")
        timeout = self.flush_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise fail("flush_timeout", "seconds > 0")
        return self

    def _check_source(self, spell: Callable[[str], str]) -> None:
        datafile, path = spell("datafile"), spell("datafile_path")
        if self.datafile is not None and self.datafile_path is not None:
            raise ConfigError(f"{self.source}: give {datafile!r} or {path!r}, not both")
        managed = isinstance(self.client, Mapping) and self.client.get("config_manager")
        given = (self.datafile, self.datafile_path, self.sdk_key or None, managed or None)
        if all(source is None for source in given):
            raise ConfigError(
                f"{self.source}: give exactly one of {datafile!r} (JSON text or a dict) and "
                f"{path!r} (a file), or {spell('sdk_key')!r} (fetched and polled)"
            )

    def datafile_text(self) -> str | bytes | Mapping[str, Any] | None:
        """The datafile itself, read from ``datafile_path`` when that is how it was given."""
        if self.datafile is not None or self.datafile_path is None:
            return self.datafile
        path = Path(str(self.datafile_path))
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{self.source}: cannot read the datafile at {str(path)!r}: {exc.strerror}"
            ) from exc


@dataclasses.dataclass
class Wiring:
    """A client and the dispatcher it sends through, owned together."""

    client: Client
    dispatcher: BatchDispatcher | AsyncDispatcher
    flush_timeout: float = DEFAULT_FLUSH_TIMEOUT

    def flush(self, timeout: float | None = None) -> DispatchOutcome | None:
        """Send what is queued, waiting at most ``timeout`` (default ``flush_timeout``).

        Synchronous dispatchers only (an ``AsyncDispatcher`` is flushed on its loop);
        never raises: a failure is logged and ``None`` returned.
        """
        if not isinstance(self.dispatcher, BatchDispatcher):
            return None
        try:
            return self.dispatcher.flush(self.flush_timeout if timeout is None else timeout)
        except Exception:
            logger.exception("flushing %r failed", self.dispatcher)
            return None

    def close(self, timeout: float | None = None) -> DispatchOutcome | None:
        """Flush and close the dispatcher, then the client. Idempotent; never raises."""
        seconds = self.flush_timeout if timeout is None else timeout
        outcome = None
        try:
            if isinstance(self.dispatcher, BatchDispatcher):
                outcome = self.dispatcher.close(seconds)
            self.client.close(seconds)
        except Exception:
            logger.exception("closing %r failed", self.dispatcher)
        return outcome


def build(settings: Settings, *, on_event_loop: bool = False) -> Wiring:
    """A :class:`Wiring`: ``Client`` over a ``BatchDispatcher`` (or ``AsyncDispatcher``).

    A ``BatchDispatcher`` gets ``atexit_timeout=flush_timeout`` unless the
    ``dispatcher`` options say otherwise, so a process that exits normally flushes.

    Raises:
        ConfigError: the datafile cannot be read or parsed, or an option is refused;
            the message names the option.
    """
    options: dict[str, Any] = dict(settings.dispatcher)
    for name in ("endpoint", "spool"):
        if getattr(settings, name) is not None:
            options[name] = getattr(settings, name)
    kind: type[BatchDispatcher] | type[AsyncDispatcher] = BatchDispatcher
    if on_event_loop:
        kind = AsyncDispatcher
    else:
        options.setdefault("atexit_timeout", settings.flush_timeout)
    _check_keywords(settings.source, "dispatcher", kind, options)
    try:
        dispatcher = kind(**options)
    except TypeError as exc:
        raise ConfigError(f"{settings.source}: a dispatcher option was refused: {exc}") from exc
    try:
        client_options = dict(settings.client)
        if settings.sdk_key is not None:
            client_options["sdk_key"] = settings.sdk_key
        _check_keywords(settings.source, "client", Client, client_options)
        client = Client(settings.datafile_text(), event_dispatcher=dispatcher, **client_options)
    except TypeError as exc:
        raise ConfigError(f"{settings.source}: a client option was refused: {exc}") from exc
    except BaseException:
        if isinstance(dispatcher, BatchDispatcher):
            dispatcher.close(0.1)
        raise
    return Wiring(client, dispatcher, float(settings.flush_timeout))


def _check_keywords(
    source: str, what: str, target: Callable[..., Any], options: Mapping[str, Any]
) -> None:
    """Refuse an option ``target`` has no keyword for, naming the closest one it has."""
    parameters = inspect.signature(target).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return
    names = [p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    bad = [str(key) for key in options if key not in names]
    if bad:
        raise ConfigError(f"{source}: {what} {unknown_names('option', bad, names)}")
