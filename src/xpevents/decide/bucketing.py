"""Murmur3 bucketing and traffic allocation.

A user is bucketed by hashing ``bucketing_id + entity_id`` (the experiment id, or the
group id for a mutually exclusive group) with MurmurHash3 x86 32-bit, seed 1, and
scaling the unsigned hash to a bucket in ``[0, 10000)``. The traffic allocation is
walked in order: the first range whose ``endOfRange`` is greater than the bucket
wins, as in optimizely-sdk 5.7.0 (ranges need not be sorted; gaps give no entity).
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Generic, TypeVar

import mmh3

logger = logging.getLogger("xpevents.bucketing")

__all__ = [
    "BUCKETING_ID_ATTRIBUTE",
    "HASH_SEED",
    "MAX_TRAFFIC_VALUE",
    "Allocation",
    "bucket_value",
    "get_bucketing_id",
    "hashable_key",
]

HASH_SEED: Final = 1
MAX_TRAFFIC_VALUE: Final = 10000
BUCKETING_ID_ATTRIBUTE: Final = "$opt_bucketing_id"

T = TypeVar("T")

_hash = mmh3.hash


def hashable_key(key: str) -> str | bytes:
    """``key`` as murmur3 may take it: a string with a lone surrogate becomes bytes.

    mmh3 crashes the process (SIGSEGV) on a ``str`` that UTF-8 cannot encode. A user id
    or ``$opt_bucketing_id`` comes from the caller, so a non-ASCII key is encoded with
    ``surrogatepass`` first; for every valid string those are the very UTF-8 bytes mmh3
    hashes, so the bucket is the same.
    """
    if key.isascii():
        return key
    return key.encode("utf-8", "surrogatepass")


def bucket_value(bucketing_key: str) -> int:
    """The bucket in ``[0, 10000)`` of a bucketing key (``bucketing_id + entity_id``).

    ``floor(hash * 10000 / 2**32)`` computed exactly in integers; this equals the
    official SDK's floating-point formula for every 32-bit hash.
    """
    key = hashable_key(bucketing_key)
    return (_hash(key, HASH_SEED, signed=False) * MAX_TRAFFIC_VALUE) >> 32


def get_bucketing_id(user_id: str, attributes: Mapping[str, Any]) -> str:
    """The ``$opt_bucketing_id`` attribute when it is a string, else the user id."""
    value = attributes.get(BUCKETING_ID_ATTRIBUTE)
    if isinstance(value, str):
        return value
    if value is not None:
        logger.warning("Bucketing ID attribute is not a string. Defaulted to user_id.")
    return user_id


class Allocation(Generic[T]):
    """A traffic allocation compiled for O(log n) lookup.

    ``ranges`` is a sequence of ``(end_of_range, target)``; :meth:`find` returns the
    target of the first range whose end is greater than the bucket, or ``None``.
    Using the running maximum of the ends keeps "first match" semantics for unsorted
    and overlapping ranges while allowing a binary search.
    """

    __slots__ = ("ends", "targets")

    def __init__(self, ranges: Iterable[tuple[int, T | None]]) -> None:
        ends: list[int] = []
        targets: list[T | None] = []
        running = None
        for end, target in ranges:
            if running is None or end > running:
                # Only a range that raises the running maximum can ever be the first
                # match: a later range with a smaller or equal end is shadowed.
                running = end
                ends.append(end)
                targets.append(target)
        self.ends: Sequence[int] = tuple(ends)
        """The range ends that can match, ascending (for :func:`bisect.bisect_right`)."""
        self.targets: Sequence[T | None] = tuple(targets)
        """The target of each of :attr:`ends`."""

    def find(self, bucket: int) -> T | None:
        """The target for a bucket, or ``None`` when the bucket falls in no range."""
        index = bisect_right(self.ends, bucket)
        if index < len(self.targets):
            return self.targets[index]
        return None

    def __len__(self) -> int:
        return len(self.ends)
