"""``multiprocessing`` pools: a client per worker process, flushed when the worker ends.

::

    from multiprocessing import get_context
    from xpevents.integrations import pool

    def work(user_id):
        pool.client().track("purchase", user_id)

    options = {"datafile_path": "datafile.json"}
    with get_context("spawn").Pool(4, pool.initializer, (options,)) as workers:
        workers.map(work, users)
        workers.close()     # let the workers end normally: each flushes at its end
        workers.join()      # (leaving the with-block first terminates them: SIGTERM)

:func:`initializer` builds the worker's client (fork or spawn alike) and registers a
``multiprocessing`` finalizer that flushes and closes it when the worker ends normally
(``close()``/``join()``, ``maxtasksperchild``). A fork-started worker does not run
``atexit`` (it ends with ``os._exit``), hence the finalizer. The options are those of
:mod:`xpevents.integrations.settings`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from multiprocessing import util
from typing import Any

from xpevents.client.client import Client
from xpevents.errors import ConfigError
from xpevents.integrations.settings import Settings, Wiring, build

__all__ = ["client", "initializer"]

FINALIZER_PRIORITY = 50
"""Our finalizer runs before the default-priority ones (0): the worker's queues still work."""

logger = logging.getLogger("xpevents.integrations")

_current: dict[int, Wiring] = {}
_failures: dict[int, Exception] = {}


def initializer(options: Mapping[str, Any]) -> None:
    """The pool's ``initializer``: build this worker's client from ``options``.

    It never raises (an initializer that raises makes ``multiprocessing`` start the
    worker again, for ever): a missing datafile or a bad option is logged, and
    :func:`client` raises it, named, in the task that asks for the client.
    """
    _current.clear()  # a parent's wiring inherited through fork is not ours
    _failures.clear()
    try:
        settings = Settings.from_mapping(options, source="xpevents.integrations.pool.initializer()")
        wiring = build(settings)
    except Exception as exc:
        logger.error("xpevents: this worker has no client: %s", exc)
        _failures[os.getpid()] = exc
        return
    _current[os.getpid()] = wiring
    util.Finalize(wiring, wiring.close, exitpriority=FINALIZER_PRIORITY)


def client() -> Client:
    """This worker's :class:`~xpevents.Client`.

    Raises:
        ConfigError: the pool was not created with ``initializer``, or the
            initializer's options were refused (the message says which).
    """
    wiring = _current.get(os.getpid())
    failure = _failures.get(os.getpid())
    if failure is not None:
        raise ConfigError(f"xpevents.integrations.pool.client(): {failure}") from failure
    if wiring is None:
        raise ConfigError(
            "xpevents.integrations.pool.client(): create the pool with "
            "initializer=xpevents.integrations.pool.initializer, initargs=(options,)"
        )
    return wiring.client
