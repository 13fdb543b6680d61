"""One at-fork registry: what must be reset in a forked child, in a fixed order.

A child process inherits a copy of every object but none of the parent's threads, and
shares the parent's sockets and file descriptors. Objects that own threads, locks,
connections or queued work register here; after ``fork()`` the child resets them
stage by stage, **lowest layer first**, so that each reset already sees the layers
below it in their fresh state:

1. :attr:`Stage.IDS`: the event-id generator is reseeded (two processes must never
   produce the same uuids);
2. :attr:`Stage.STORE`: spool backends (SQLite and Redis connections, their locks);
3. :attr:`Stage.FRONT`: durable spool fronts (buffers and committer threads);
4. :attr:`Stage.DISPATCHER`: dispatchers (queues, sender threads, HTTP clients);
5. :attr:`Stage.CONFIG`: datafile pollers and watchers (a child polls on its own).

Within a stage, objects are reset in the order they registered. Registration holds
only a weak reference: the registry never keeps an object alive.
"""

from __future__ import annotations

import enum
import logging
import mmap
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Final, Protocol

__all__ = [
    "ForkMark",
    "Resettable",
    "Stage",
    "at_fork",
    "new_fork_mark",
    "reset_if_forked",
    "track",
    "untrack",
]

logger = logging.getLogger("xpevents.fork")


class Stage(enum.IntEnum):
    """Reset order in a forked child (lowest first)."""

    IDS = 1
    STORE = 2
    FRONT = 3
    DISPATCHER = 4
    CONFIG = 5


class Resettable(Protocol):
    """An object that can start afresh in a forked child."""

    def _reset_after_fork(self) -> None: ...


class ForkMark(Protocol):
    """``mark[0]`` is 1 in the process that armed it and 0 in a process forked from it."""

    def __getitem__(self, index: int, /) -> int: ...

    def __setitem__(self, index: int, value: int, /) -> None: ...


class _PidMark:
    """The portable mark: one ``getpid`` per reading."""

    __slots__ = ("_pid",)

    def __init__(self) -> None:
        self._pid = os.getpid()

    def __getitem__(self, index: int, /) -> int:
        return 1 if os.getpid() == self._pid else 0

    def __setitem__(self, index: int, value: int, /) -> None:
        self._pid = os.getpid() if value else -1


# Linux >= 4.14; Python's mmap module lacks the constant when built on older headers
_MADV_WIPEONFORK: Final = getattr(
    mmap, "MADV_WIPEONFORK", 18 if sys.platform.startswith("linux") else None
)


def new_fork_mark() -> ForkMark:
    """A mark that tells, in one cheap read, whether this process was forked since.

    ``mark[0]`` reads 1 in the process that made it and 0 in every child forked from it,
    whether or not the fork ran Python's at-fork hooks (uWSGI forks from C); the child
    re-arms it with ``mark[0] = 1``. On Linux it is a private page the kernel zeroes in
    every child (``MADV_WIPEONFORK``, as OpenSSL guards its random generator): a read
    is an index, no system call (a ``getpid`` is one, about 200 ns in a microVM).
    Elsewhere, or when the kernel refuses the advice, it compares process ids.
    """
    if _MADV_WIPEONFORK is not None:
        try:
            page = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            page.madvise(_MADV_WIPEONFORK)
        except (AttributeError, OSError, ValueError):
            pass
        else:
            page[0] = 1
            return page
    return _PidMark()


_objects: dict[Stage, weakref.WeakKeyDictionary[Resettable, None]] = {
    stage: weakref.WeakKeyDictionary() for stage in Stage
}
_functions: dict[Stage, list[Callable[[], object]]] = {stage: [] for stage in Stage}


def track(obj: Resettable, stage: Stage) -> None:
    """Call ``obj._reset_after_fork()`` in every forked child (until :func:`untrack`)."""
    _objects[stage][obj] = None


def untrack(obj: Resettable) -> None:
    """Stop resetting ``obj`` (it was closed)."""
    for registered in _objects.values():
        registered.pop(obj, None)


def at_fork(function: Callable[[], object], stage: Stage) -> None:
    """Call ``function()`` in every forked child, with the other resets of ``stage``."""
    _functions[stage].append(function)


_reset_pid = os.getpid()
"""The process the registry last reset in (or started in)."""
_reset_lock = threading.Lock()


def reset_if_forked() -> bool:
    """Run the child resets now if this process was forked without Python's hooks.

    ``os.fork()`` runs them itself; a server that forks from C without telling the
    interpreter (uWSGI without ``py-call-uwsgi-fork-hooks``) does not. The event-id
    generator checks its fork mark (:func:`new_fork_mark`) on every event anyway and
    calls this when it reads 0, so one check guards every registered object. True when it reset.
    """
    global _reset_pid
    if os.getpid() == _reset_pid:
        return False
    with _reset_lock:
        if os.getpid() == _reset_pid:
            return False
        _after_fork_in_child()
    return True


def _after_fork_in_child() -> None:
    global _reset_pid
    _reset_pid = os.getpid()
    for stage in Stage:
        for function in _functions[stage]:
            _run(function)
        for obj in list(_objects[stage].keys()):
            _run(obj._reset_after_fork)


def _run(function: Callable[[], object]) -> None:
    try:
        function()
    except Exception:  # pragma: no cover - one failing reset must not skip the others
        logger.exception("resetting %r in a forked child failed", function)


os.register_at_fork(after_in_child=_after_fork_in_child)
