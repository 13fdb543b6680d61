"""Spools: the queue behind a batching dispatcher (memory, SQLite, Redis Streams).

``open_spool`` turns a URL (or path, or object) into a :class:`Spool`:

* ``"memory://"`` (or ``None``): :class:`~xpevents.spool.memory.MemorySpool`, not durable;
* ``"sqlite:///relative/path.db"``, ``"sqlite:////absolute/path.db"`` or a
  :class:`pathlib.Path`: :class:`~xpevents.spool.sqlite.SqliteSpool`;
* ``"redis://host:port/db?stream=NAME"``: :class:`~xpevents.spool.redis.RedisSpool`;
* any object implementing :class:`Spool` is returned as it is.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from xpevents.errors import ConfigError
from xpevents.spool.base import DeadLetter, Spool, SpoolRecord, SpoolStats
from xpevents.spool.front import SpoolFront
from xpevents.spool.memory import MemorySpool
from xpevents.spool.sqlite import SqliteSpool

if TYPE_CHECKING:
    from xpevents.spool.redis import RedisSpool

__all__ = [
    "DeadLetter",
    "MemorySpool",
    "RedisSpool",
    "Spool",
    "SpoolFront",
    "SpoolRecord",
    "SpoolStats",
    "SqliteSpool",
    "open_spool",
]


def __getattr__(name: str) -> Any:
    # redis-py is a heavier import: load the Redis backend only when asked for.
    if name == "RedisSpool":
        from xpevents.spool.redis import RedisSpool

        return RedisSpool
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_spool(spec: str | os.PathLike[str] | Spool | None, **options: Any) -> Spool:
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
        if spec.startswith("sqlite://"):
            return SqliteSpool.from_url(spec, **options)
        if spec.startswith(("redis://", "rediss://", "unix://")):
            from xpevents.spool.redis import RedisSpool

            return RedisSpool.from_url(spec, **options)
    raise ConfigError(
        f"spool={spec!r}: expected 'memory://', 'sqlite:///path/to/spool.db', "
        "'redis://host:port/db?stream=NAME', a pathlib.Path or a Spool object"
    )
