"""Spools: the queue behind a batching dispatcher (memory, SQLite, Redis Streams).

``open_spool`` turns a URL (or path, or object) into a :class:`Spool`:

* ``"memory://"`` (or ``None``): :class:`~xpevents.spool.memory.MemorySpool`, not durable;
* ``"sqlite:///relative/path.db"``, ``"sqlite:////absolute/path.db"`` or a
  :class:`pathlib.Path`: :class:`~xpevents.spool.sqlite.SqliteSpool`;
* ``"redis://host:port/db?stream=NAME"``: :class:`~xpevents.spool.redis.RedisSpool`;
* any object implementing :class:`Spool` is returned as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xpevents.spool.base import DeadLetter, Spool, SpoolRecord, SpoolStats
from xpevents.spool.front import SpoolFront
from xpevents.spool.memory import MemorySpool
from xpevents.spool.opening import open_spool
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
