"""The config manager contract, and the one place where a config is swapped in.

A config manager hands the client the current :class:`~xpevents.decide.datafile.ProjectConfig`
(``get_config()``) and tells listeners when a new one replaced it. The swap is one
attribute assignment, so a reader sees the old config or the new one, never a mix, and
takes no lock: a decision reads ``get_config()`` once and uses that config from start to
finish.

:class:`ConfigHolder` is what every shipped manager builds on: the current config, the
listeners, the counters behind :class:`ConfigStats`, and the rule that a failure is
logged once per episode (when it starts, and when it ends).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from xpevents._internal.redact import redact_url
from xpevents.config.disk import write_cache
from xpevents.config.fetch import Fetched, Result
from xpevents.decide.datafile import ProjectConfig

__all__ = ["ConfigHolder", "ConfigListener", "ConfigManager", "ConfigStats"]

logger = logging.getLogger("xpevents.config")

ConfigListener = Callable[[ProjectConfig], object]
"""``listener(new_config)``, called after each swap, in the manager's thread."""


@runtime_checkable
class ConfigManager(Protocol):
    """What :class:`~xpevents.Client` needs from a source of datafiles.

    The official SDK's config managers have the same ``get_config()``. Optional extras
    the client uses when a manager has them: ``config_now()`` (the config without
    waiting), ``datafile_of(config)`` (its JSON text, for ``get_optimizely_config()``)
    and ``stats()`` (a :class:`ConfigStats`).
    """

    def get_config(self) -> ProjectConfig | None:
        """The current config (``None`` before the first datafile)."""
        ...

    def add_listener(self, listener: ConfigListener) -> None:
        """Call ``listener(config)`` after every swap."""
        ...

    def close(self) -> None:
        """Stop polling or watching and release connections. Idempotent."""
        ...


@dataclass(frozen=True, slots=True)
class ConfigStats:
    """Where a config manager stands.

    Attributes:
        source: what is polled or watched (a URL, a path, ``"static"``).
        revision: the current datafile's revision, or ``None`` before the first one.
        ready: True once a usable datafile is in place.
        fetches: requests (or file reads) made.
        not_modified: answers that said nothing changed (304, same revision, same file).
        changes: datafiles swapped in.
        failures: fetches that brought no new config, by reason (``http_503``,
            ``timeout``, ``invalid_datafile``, ``older_revision``, ``unauthorized``...).
        last_fetch_at, last_success_at, last_change_at: wall-clock times, or ``None``.
        last_error: a one-line description of the latest failure, or ``None``.
    """

    source: str
    revision: str | None = None
    ready: bool = False
    fetches: int = 0
    not_modified: int = 0
    changes: int = 0
    failures: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    last_fetch_at: float | None = None
    last_success_at: float | None = None
    last_change_at: float | None = None
    last_error: str | None = None


class ConfigHolder:
    """The current config, its listeners and its counters. Thread-safe.

    Args:
        source: what the manager reads from (for stats and log lines).
        config: the config to start with (a fallback datafile), or ``None``.
    """

    def __init__(
        self, source: str, config: ProjectConfig | None = None, datafile: bytes | None = None
    ) -> None:
        self.source = redact_url(source)
        self.config = config
        self._text = None if config is None or datafile is None else (config, datafile)
        self.ready = threading.Event()
        if config is not None:
            self.ready.set()
        self._listeners: tuple[ConfigListener, ...] = ()
        self._lock = threading.Lock()
        self._failures: Counter[str] = Counter()
        self._fetches = self._not_modified = self._changes = 0
        self._last_fetch_at: float | None = None
        self._last_success_at: float | None = None
        self._last_change_at: float | None = None
        self._last_error: str | None = None
        self._failing = False

    def add_listener(self, listener: ConfigListener) -> None:
        """Call ``listener(config)`` after every swap."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def datafile_of(self, config: ProjectConfig) -> bytes | None:
        """The JSON text ``config`` was loaded from, while it is the current one."""
        text = self._text
        return text[1] if text is not None and text[0] is config else None

    def swap(self, config: ProjectConfig, now: float, datafile: bytes | None = None) -> None:
        """Make ``config`` current (one assignment), then tell the listeners."""
        if datafile is not None:
            self._text = (config, datafile)
        self.config = config
        self.ready.set()
        with self._lock:
            self._changes += 1
            self._last_change_at = now
            listeners = self._listeners
        logger.info("datafile revision %s from %s is in use", config.revision, self.source)
        for listener in listeners:
            try:
                listener(config)
            except Exception:
                logger.exception("config listener %r raised; the new config is in use", listener)

    def fetched(self, now: float) -> None:
        """A fetch (or read) is being made."""
        with self._lock:
            self._fetches += 1
            self._last_fetch_at = now

    def succeeded(self, now: float, *, changed: bool) -> None:
        """The fetch worked (a new config, or nothing new)."""
        with self._lock:
            self._last_success_at = now
            if not changed:
                self._not_modified += 1
            ended = self._failing
            self._failing = False
        if ended:
            logger.warning("datafile from %s can be fetched again", self.source)

    def failed(self, reason: str, detail: str) -> None:
        """The fetch brought no new config; logged once when an episode starts."""
        message = f"datafile from {self.source}: {detail}"
        with self._lock:
            self._failures[reason] += 1
            self._last_error = message
            started = not self._failing
            self._failing = True
        if started:
            current = (
                "keeping revision " + self.config.revision if self.config else "no datafile yet"
            )
            logger.error(
                "%s (%s; retrying with backoff, logged once per episode)", message, current
            )

    def apply(self, fetched: Fetched, now: float, *, cache: Path | None = None) -> None:
        """Act on one fetch: swap a new config in (and cache it), count, log."""
        if fetched.result is Result.CHANGED:
            assert fetched.config is not None
            self.swap(fetched.config, now, fetched.datafile)
            if cache is not None and fetched.datafile is not None:
                write_cache(cache, fetched.datafile)
            self.succeeded(now, changed=True)
        elif fetched.result is Result.UNCHANGED:
            self.succeeded(now, changed=False)
        else:
            self.failed(fetched.reason, fetched.detail)

    def stats(self) -> ConfigStats:
        """A snapshot of the counters."""
        config = self.config
        with self._lock:
            return ConfigStats(
                source=self.source,
                revision=None if config is None else config.revision,
                ready=config is not None,
                fetches=self._fetches,
                not_modified=self._not_modified,
                changes=self._changes,
                failures=MappingProxyType(dict(self._failures)),
                last_fetch_at=self._last_fetch_at,
                last_success_at=self._last_success_at,
                last_change_at=self._last_change_at,
                last_error=self._last_error,
            )
