"""Skipping the build of an event a full queue would refuse.

Under ``overflow="drop_newest"`` a full memory queue refuses every new event; a client
that builds the impression first (ids, timestamp, visitor bytes) and only then hears
"no" spends most of an ``activate`` on an event that is counted as dropped and thrown
away, exactly when the process is overloaded. The dispatcher's :class:`RefusalGate`
lets its client ask first: ``gate.shut`` (an attribute read on every event) is set
once the queue has refused one, and :meth:`RefusalGate.refuse` then counts the next
event as refused (``queue_full``, as if it had been offered) while the queue is still
full, or reopens the gate when there is room.

Nothing may see the event it skips: a dispatcher with an ``on_drop`` callback (which
receives each refused event) has no gate, and the client asks only while nobody
listens to its notifications.
"""

from __future__ import annotations

from xpevents._internal.forking import new_fork_mark
from xpevents.dispatch.drops import Drops
from xpevents.spool.memory import MemorySpool

__all__ = ["RefusalGate"]


class RefusalGate:
    """``shut``: the memory queue refused the last event it was offered.

    Args:
        memory: the dispatcher's memory spool (``drop_newest``).
        drops: the dispatcher's drop accounting, without ``on_drop`` (the refusals
            are counted there).
    """

    __slots__ = ("_drops", "_mark", "_memory", "shut")

    def __init__(self, memory: MemorySpool, drops: Drops) -> None:
        self._memory = memory
        self._drops = drops
        self._mark = new_fork_mark()  # reads 0 in a forked child: no getpid() per event
        self.shut = False

    def refuse(self) -> bool:
        """Count one event refused with ``queue_full`` if the queue is still full.

        Returns ``False`` (and reopens the gate) when the event should be built and
        offered after all: the queue has room, or this is a forked child (whose
        dispatcher resets at its first event).
        """
        memory = self._memory
        if memory.depth < memory.max_events or not self._mark[0]:
            self.shut = False
            return False
        self._drops.refuse(None, 1, "queue_full")
        return True

    def reset_after_fork(self) -> None:
        """A forked child starts with an empty queue: open, owned by this process."""
        self._mark[0] = 1
        self.shut = False
