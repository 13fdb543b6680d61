"""The dead letters a :class:`~xpevents.spool.memory.MemorySpool` keeps for inspection."""

from __future__ import annotations

import itertools
from collections import Counter, deque

from xpevents.spool.base import DeadLetter

__all__ = ["DeadLetterBox"]


class DeadLetterBox:
    """Dead letters, oldest first, with a count per reason.

    The bound is passed to :meth:`add` rather than kept here, so that it follows the
    spool's ``max_dead_letters`` attribute. Not thread-safe: the spool calls it under
    its lock.
    """

    __slots__ = ("_letters", "by_reason")

    def __init__(self) -> None:
        self._letters: deque[DeadLetter] = deque()
        self.by_reason: Counter[str] = Counter()
        """Dead letters kept, by reason."""

    def add(self, letter: DeadLetter, *, keep: int) -> int:
        """Keep ``letter``, forgetting the oldest beyond ``keep``; returns how many were
        forgotten (``letter`` itself when ``keep`` is 0)."""
        if keep == 0:
            return 1
        forgotten = 0
        if len(self._letters) >= keep:
            old = self._letters.popleft()
            self.by_reason[old.reason] -= 1
            forgotten = 1
        self._letters.append(letter)
        self.by_reason[letter.reason] += 1
        return forgotten

    def oldest(self, limit: int) -> list[DeadLetter]:
        """The ``limit`` oldest dead letters."""
        return list(itertools.islice(self._letters, limit))

    def take(self, reason: str | None) -> list[DeadLetter]:
        """Remove and return the dead letters of ``reason`` (or all), oldest first."""
        keep: deque[DeadLetter] = deque()
        taken: list[DeadLetter] = []
        for letter in self._letters:
            (taken if reason is None or letter.reason == reason else keep).append(letter)
        self._letters = keep
        for letter in taken:
            self.by_reason[letter.reason] -= 1
        return taken

    def purge(self, reason: str | None) -> int:
        """Delete the dead letters of ``reason`` (or all); returns how many."""
        before = len(self._letters)
        self._letters = deque(d for d in self._letters if reason is not None and d.reason != reason)
        self.by_reason = Counter(d.reason for d in self._letters)
        return before - len(self._letters)
