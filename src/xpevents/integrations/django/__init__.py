"""A Django app: one xpevents client per process, configured from ``settings.XPEVENTS``.

::

    INSTALLED_APPS = [..., "xpevents.integrations.django"]
    XPEVENTS = {
        "DATAFILE_PATH": BASE_DIR / "datafile.json",   # or "DATAFILE": json text / dict
        "ENDPOINT": "http://127.0.0.1:8787",           # optional (XPEVENTS_ENDPOINT)
        "SPOOL": "sqlite:///var/xpevents.db",          # optional, default memory://
        "DISPATCHER": {"batch_size": 50},              # optional BatchDispatcher options
        "FLUSH_TIMEOUT": 5.0,                          # optional, seconds at exit
    }

    from xpevents.integrations.django import client
    client().activate("checkout_button_color", request.user.username)

The client is created in ``AppConfig.ready`` (so a bad setting stops the start with a
message naming it) over a ``BatchDispatcher``: requests never wait on the network;
under gunicorn ``--preload`` the master creates it and each forked worker starts its own
senders with an empty queue; each process flushes at exit within ``FLUSH_TIMEOUT``.
Keys are those of :mod:`xpevents.integrations.settings`, in upper case.
"""

from __future__ import annotations

from xpevents.client.client import Client
from xpevents.errors import ConfigError
from xpevents.integrations.settings import Wiring

__all__ = ["client", "wiring"]

_installed: list[Wiring] = []


def wiring() -> Wiring:
    """The process's client and dispatcher (see :func:`client`)."""
    if not _installed:
        raise ConfigError(
            "xpevents.integrations.django.client(): the xpevents app is not ready; add "
            "'xpevents.integrations.django' to INSTALLED_APPS and settings.XPEVENTS"
        )
    return _installed[0]


def client() -> Client:
    """The :class:`~xpevents.Client` created from ``settings.XPEVENTS`` at startup.

    Raises:
        ConfigError: the app is not in ``INSTALLED_APPS`` (or Django is not set up).
    """
    return wiring().client


def _install(built: Wiring) -> None:
    _installed[:] = [built]
