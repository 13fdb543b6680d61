"""User profile stores for sticky bucketing, behind the official optimizely-sdk interface.

Each store is a user profile service: ``lookup(user_id) -> dict | None`` and
``save(profile)``, so it works with ``xpevents.Client(user_profile_service=...)`` and with
``optimizely.Optimizely(user_profile_service=...)`` alike. Each also has the batch pair
``lookup_many(user_ids)`` / ``save_many(profiles)`` (one round trip for many users) and
``stats()``.

* :class:`MemoryProfileStore`: one process, bounded (least recently used users go first).
* :class:`SQLiteProfileStore`: one file in WAL mode, shared by the processes of a machine.
* :class:`RedisProfileStore`: shared by many machines; optional TTL; a socket timeout of a
  few milliseconds, after which the decision goes on without stickiness (counted).

A store never raises into a decision: a failure is counted (``errors``/``timeouts``),
logged at most every 10 s, and ``lookup`` answers ``None`` ("no profile"), as an
unreachable store must. Rows are per (user, experiment): two processes saving different
experiments of one user never overwrite each other.
"""

from xpevents.profiles.base import ProfileStats, ProfileStore
from xpevents.profiles.memory import MemoryProfileStore
from xpevents.profiles.sqlite import SQLiteProfileStore

__all__ = [
    "MemoryProfileStore",
    "ProfileStats",
    "ProfileStore",
    "RedisProfileStore",
    "SQLiteProfileStore",
]


def __getattr__(name: str) -> object:
    # redis-py is imported only by code that asks for the Redis store
    if name == "RedisProfileStore":
        from xpevents.profiles.redis import RedisProfileStore

        return RedisProfileStore
    raise AttributeError(name)
