"""A dict bounded by forgetting everything once it holds too many entries.

The caches it backs (parsed envelopes, envelope ids, routed URLs) hold a handful of
entries in practice; clearing on overflow keeps memory bounded against a caller that
sends endless distinct keys, at the cost of a few recomputations, with no LRU
bookkeeping on the hot path (``get`` is the plain dict method).
"""

from __future__ import annotations

from typing import TypeVar

__all__ = ["BoundedCache"]

_K = TypeVar("_K")
_V = TypeVar("_V")


class BoundedCache(dict[_K, _V]):
    """``put`` clears the cache first when it already holds ``limit`` entries."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: _K, value: _V) -> _V:
        """Store ``value`` under ``key`` (after clearing a full cache); return it."""
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value
