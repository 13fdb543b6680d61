"""A connection that belongs to one process: the durable spools' SQLite connection and
Redis client.

A forked child inherits the parent's connection object, whose file locks or sockets
still belong to the parent: using it would mix the two processes' traffic, and closing
it could disturb the parent (an SQLite checkpoint, a Redis socket shut down). So the
first use in a child opens a new connection, and the inherited one is neither used nor
closed.

It is registered with :mod:`xpevents._internal.forking` as a store
(:attr:`~xpevents._internal.forking.Stage.STORE`): in a child, its lock is replaced
before anything above the store runs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from xpevents._internal import forking
from xpevents.errors import SpoolError

__all__ = ["ProcessConnection"]

_C = TypeVar("_C")


class ProcessConnection(Generic[_C]):
    """This process's connection to a store, and the lock that serialises its use.

    Args:
        current: the connection opened by this process.
        name: how error messages name the store (``"SQLite spool '/x.db'"``).
        reopen: ``reopen(inherited)`` opens the connection of a forked child.
        close: ``close(connection)`` closes it; must not raise.
    """

    __slots__ = ("__weakref__", "_close", "_closed", "_current", "_pid", "_reopen", "lock", "name")

    def __init__(
        self,
        current: _C,
        *,
        name: str,
        reopen: Callable[[_C], _C],
        close: Callable[[_C], object],
    ) -> None:
        self.lock = threading.Lock()
        self.name = name
        self._current = current
        self._reopen = reopen
        self._close = close
        self._pid = os.getpid()
        self._closed = False
        forking.track(self, forking.Stage.STORE)

    def get(self) -> _C:
        """This process's connection; call it with :attr:`lock` held.

        Raises:
            SpoolError: the store was closed.
        """
        if self._closed:
            raise SpoolError(f"{self.name} is closed")
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._current = self._reopen(self._current)
        return self._current

    def close(self) -> None:
        """Close this process's connection (never one inherited from a parent). Idempotent."""
        with self.lock:
            if self._closed:
                return
            self._closed = True
            if self._pid == os.getpid():
                self._close(self._current)
        forking.untrack(self)

    def _reset_after_fork(self) -> None:
        # The parent may have held the lock at fork time; the child gets a free one.
        self.lock = threading.Lock()
