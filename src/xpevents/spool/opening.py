"""Opening spools: from a URL, a path or an object to the store a dispatcher reads.

:func:`open_spool` turns a spec into a :class:`~xpevents.spool.base.Spool`.
:func:`open_for_dispatch` is what a batching dispatcher calls: the memory spool it
owns, or a durable store behind a :class:`~xpevents.spool.front.SpoolFront` (write
through or group commit, memory fallback), configured by :class:`SpoolOptions`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from xpevents._internal.redact import redact_url
from xpevents._internal.validate import choice, positive_seconds
from xpevents.errors import ConfigError
from xpevents.spool.base import Spool
from xpevents.spool.front import SpoolFront
from xpevents.spool.memory import MemorySpool
from xpevents.spool.sqlite import SqliteSpool

__all__ = ["DURABILITY_MODES", "OpenedSpool", "SpoolOptions", "open_for_dispatch", "open_spool"]

DURABILITY_MODES: Final = ("always", "interval")
SPOOL_ERROR_POLICIES: Final = ("memory", "drop")

SpoolSpec = str | os.PathLike[str] | Spool | None


def _shown(spec: object) -> str:
    """``spec`` for a message: a URL's credentials hidden."""
    return repr(redact_url(spec)) if isinstance(spec, str) else repr(spec)


def open_spool(spec: SpoolSpec, **options: Any) -> Spool:
    """Open the spool named by ``spec``; ``options`` go to the backend's constructor.

    Raises:
        ConfigError: ``spec`` is not a spool URL, path or object.
        SpoolError: the store cannot be opened (corrupt file, unreadable path, Redis
            unreachable...); the message says which and what to do.
    """
    if isinstance(spec, Spool):
        return spec
    if spec is None or spec == "memory://":
        return MemorySpool(**options)
    if isinstance(spec, os.PathLike):
        return SqliteSpool(os.fspath(spec), **options)
    if isinstance(spec, str):
        if spec.startswith("sqlite:"):  # every malformed form gets the SQLite message
            return SqliteSpool.from_url(spec, **options)
        if spec.startswith(("redis://", "rediss://", "unix://")):
            from xpevents.spool.redis import RedisSpool  # redis-py only when asked for

            return RedisSpool.from_url(spec, **options)
    raise ConfigError(
        f"spool={_shown(spec)}: expected 'memory://', 'sqlite:///path/to/spool.db', "
        "'redis://host:port/db?stream=NAME', a pathlib.Path or a Spool object"
    )


@dataclass(frozen=True, slots=True)
class SpoolOptions:
    """Where a batching dispatcher keeps its visitors, and how durably.

    Attributes:
        spec: ``None`` / ``"memory://"``, a durable spool URL, a path or a Spool object.
        durability: ``"always"`` (write through) or ``"interval"`` (group commit).
        commit_interval: seconds between group commits.
        on_spool_error: ``"memory"`` (hold visitors while the store fails) or ``"drop"``.
        max_spool_events, max_spool_bytes, max_event_age: the durable backend's bounds
            (``None``: its default).
        owner: the dispatcher class named in error messages.

    Raises:
        ConfigError: an option is invalid; the message names it and the fix.
    """

    spec: SpoolSpec = None
    durability: str = "always"
    commit_interval: float = 0.005
    on_spool_error: str = "memory"
    max_spool_events: int | None = None
    max_spool_bytes: int | None = None
    max_event_age: float | None = None
    owner: str = "BatchDispatcher"

    def __post_init__(self) -> None:
        owner = self.owner
        choice("durability", self.durability, DURABILITY_MODES, owner=owner)
        choice("on_spool_error", self.on_spool_error, SPOOL_ERROR_POLICIES, owner=owner)
        positive_seconds("commit_interval", self.commit_interval, owner=owner)

    def backend_options(self) -> dict[str, Any]:
        """The bounds given, as keyword arguments for a durable backend."""
        bounds = (
            ("max_spool_events", self.max_spool_events),
            ("max_spool_bytes", self.max_spool_bytes),
            ("max_event_age", self.max_event_age),
        )
        return {name: value for name, value in bounds if value is not None}


@dataclass(frozen=True, slots=True)
class OpenedSpool:
    """What :func:`open_for_dispatch` opened.

    Attributes:
        store: the spool the dispatcher reads and writes (a front for a durable one).
        memory: the same object when it is the memory spool (the fast path), else None.
        owned: True when the dispatcher opened it and so closes it.
    """

    store: Spool
    memory: MemorySpool | None
    owned: bool


def open_for_dispatch(
    options: SpoolOptions,
    *,
    max_queue_events: int,
    overflow: str,
    block_timeout: float,
    on_event_loop: bool,
    on_evict: Callable[[bytes, str], object],
    on_drop: Callable[[str, int], None],
) -> OpenedSpool:
    """Open the spool a batching dispatcher runs on.

    ``on_event_loop``: the dispatcher's ``dispatch_event`` runs on an event loop, so an
    append must never do I/O: ``durability="always"`` and a blocking memory spool are
    refused, and the front never commits inline (beyond ``max_queue_events`` buffered
    visitors the oldest are dropped and counted).

    Raises:
        ConfigError: an option does not fit (the message names it and the fix).
        SpoolError: the durable store cannot be opened.
    """
    owner = options.owner
    if options.durability == "always" and on_event_loop:
        raise ConfigError(
            f"{owner}(durability='always'): a write-through commit would run on the "
            "event loop; use durability='interval' (group commit from a background "
            "thread every commit_interval seconds; `await flush()` waits for it)"
        )
    spec = options.spec
    if isinstance(spec, MemorySpool):
        if spec.overflow == "block" and on_event_loop:
            raise ConfigError(
                f"{owner}(spool={_shown(spec)}): a MemorySpool with overflow='block' "
                "would block the event loop; use 'drop_newest' or 'drop_oldest'"
            )
        spec.on_evict = on_evict
        return OpenedSpool(spec, spec, owned=False)
    if spec is None or spec == "memory://":
        memory = MemorySpool(max_queue_events, overflow, block_timeout, on_evict=on_evict)
        return OpenedSpool(memory, memory, owned=True)
    owned = not isinstance(spec, Spool)
    store = open_spool(spec, **options.backend_options())
    if not store.durable:
        return OpenedSpool(store, None, owned)
    extra: dict[str, Any] = {}
    if on_event_loop:
        extra["max_uncommitted"] = max_queue_events + 1
    front = SpoolFront(
        store,
        durability=options.durability,
        commit_interval=options.commit_interval,
        on_spool_error=options.on_spool_error,
        max_buffer_events=max_queue_events,
        on_drop=on_drop,
        **extra,
    )
    return OpenedSpool(front, None, owned=True)
