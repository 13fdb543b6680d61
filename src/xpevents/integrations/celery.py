"""Celery: a client per worker process, flushed before the process goes away.

::

    from celery import Celery
    from xpevents.integrations.celery import client, install

    app = Celery("shop", broker="redis://127.0.0.1:6379/0")
    install(app, datafile_path="datafile.json")

    @app.task
    def checkout(user_id):
        client().track("purchase", user_id)

What the signals do:

* ``worker_process_init`` (each prefork child, right after it is forked or spawned): a
  fresh client and ``BatchDispatcher`` for that child, nothing inherited from the parent.
* ``worker_process_shutdown`` (the child, before billiard ends it with ``os._exit``, which
  skips ``atexit``): flush and close within ``flush_timeout`` (default 5 s).
* ``worker_shutdown`` (the main worker process: solo and thread pools): the same.

Elsewhere (a process that only sends tasks, a test), :func:`client` builds the client at
first use, and the dispatcher's ``atexit`` hook flushes it. The options are those of
:mod:`xpevents.integrations.settings`; they are checked by :func:`install`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from celery import signals

from xpevents.client.client import Client
from xpevents.errors import ConfigError
from xpevents.integrations.settings import Settings, Wiring, build

__all__ = ["client", "install"]

logger = logging.getLogger("xpevents.integrations")

_lock = threading.Lock()
_settings: list[Settings] = []
_current: dict[int, Wiring] = {}  # pid -> this process's wiring


def install(app: Any, settings: Mapping[str, Any] | None = None, **options: Any) -> None:
    """Connect the worker signals for ``app`` with these options (checked now).

    Args:
        app: the ``Celery`` application (its ``conf["xpevents"]`` is read when neither
            ``settings`` nor ``options`` are given).
        settings, **options: lower-case integration options (``datafile_path``,
            ``endpoint``, ``dispatcher``, ``flush_timeout``...).

    Raises:
        ConfigError: a missing datafile or a bad option, named.
    """
    if not hasattr(app, "conf"):
        raise ConfigError(f"install({app!r}): expected a Celery application")
    given = {**(settings or {}), **options} or app.conf.get("xpevents")
    if given is None:
        raise ConfigError(
            "xpevents.integrations.celery.install(app, datafile_path=...): give the options, "
            "or set app.conf['xpevents'] = {...}"
        )
    parsed = Settings.from_mapping(given, source="xpevents.integrations.celery.install()")
    with _lock:
        _settings[:] = [parsed]
    signals.worker_process_init.connect(_start_child, weak=False)
    signals.worker_process_shutdown.connect(_stop, weak=False)
    signals.worker_shutdown.connect(_stop, weak=False)


def client() -> Client:
    """This process's :class:`~xpevents.Client` (built at first use if needed).

    Raises:
        ConfigError: :func:`install` was not called.
    """
    pid = os.getpid()
    wiring = _current.get(pid)
    if wiring is not None:
        return wiring.client
    with _lock:
        if pid not in _current:
            if not _settings:
                raise ConfigError(
                    "xpevents.integrations.celery.client(): call install(app, ...) where the "
                    "Celery app is created"
                )
            _current.clear()  # another pid's wiring was inherited through fork
            _current[pid] = build(_settings[0])
        return _current[pid].client


def _start_child(**_: Any) -> None:
    try:
        with _lock:
            _current.clear()
        client()
    except Exception:  # a worker that cannot build its client still runs its tasks
        logger.exception("xpevents: building this worker process's client failed")


def _stop(**_: Any) -> None:
    wiring = _current.pop(os.getpid(), None)
    if wiring is None:
        return
    outcome = wiring.close()
    if outcome is not None and outcome.pending:
        logger.warning("xpevents: worker %d exited with %s", os.getpid(), outcome)
