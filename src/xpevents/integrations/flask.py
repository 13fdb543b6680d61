"""A Flask extension: one xpevents client per app, configured from ``app.config``.

::

    from flask import Flask
    from xpevents.integrations.flask import Xpevents, current_client

    app = Flask(__name__)
    app.config["XPEVENTS_DATAFILE_PATH"] = "datafile.json"
    Xpevents(app)                       # or: xpevents = Xpevents(); xpevents.init_app(app)

    @app.get("/checkout")
    def checkout():
        current_client.activate("checkout_button_color", request.args["user"])

Keys (all optional but the datafile; see :mod:`xpevents.integrations.settings`):
``XPEVENTS_DATAFILE`` or ``XPEVENTS_DATAFILE_PATH``, ``XPEVENTS_ENDPOINT``,
``XPEVENTS_SPOOL``, ``XPEVENTS_DISPATCHER`` (a dict of ``BatchDispatcher`` options),
``XPEVENTS_CLIENT`` (a dict of ``Client`` options), ``XPEVENTS_FLUSH_TIMEOUT`` (5 s).
An unknown ``XPEVENTS_*`` key is an error, so a typo does not go unnoticed.

The client sends through a ``BatchDispatcher``: requests never wait on the network, a
worker forked by gunicorn (``--preload`` or not) starts its own senders with an empty
queue, and every process flushes at exit within ``XPEVENTS_FLUSH_TIMEOUT``.
"""

from __future__ import annotations

from typing import Any, cast

from flask import Flask, current_app
from werkzeug.local import LocalProxy

from xpevents.client.client import Client
from xpevents.errors import ConfigError
from xpevents.integrations.settings import Settings, Wiring, build

__all__ = ["Xpevents", "current_client"]

PREFIX = "XPEVENTS_"
EXTENSION = "xpevents"


def _spell(name: str) -> str:
    return PREFIX + name.upper()


class Xpevents:
    """The extension. ``Xpevents(app)``, or ``Xpevents()`` then ``init_app(app)``."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> Wiring:
        """Create the app's client from ``app.config``; store it in ``app.extensions``.

        Raises:
            ConfigError: a missing datafile or a bad ``XPEVENTS_*`` value, named.
        """
        if not isinstance(app, Flask):
            raise ConfigError(f"Xpevents.init_app({app!r}): expected a Flask application")
        if EXTENSION in app.extensions:
            raise ConfigError(f"Xpevents.init_app({app.name!r}): already initialised")
        options = {k: v for k, v in app.config.items() if k.startswith(PREFIX)}
        settings = Settings.from_mapping(options, source="app.config", spell=_spell)
        wiring = build(settings)
        app.extensions[EXTENSION] = wiring
        return wiring

    @staticmethod
    def wiring(app: Flask | None = None) -> Wiring:
        """The client and dispatcher of ``app`` (default: the current app)."""
        target = current_app if app is None else app
        wiring = target.extensions.get(EXTENSION)
        if not isinstance(wiring, Wiring):
            raise ConfigError(
                "xpevents: this Flask app has no client; call Xpevents(app) or "
                "Xpevents().init_app(app) when creating it"
            )
        return wiring


def _current() -> Client:
    return Xpevents.wiring().client


current_client: Client = cast(Any, LocalProxy(_current))
"""The current app's :class:`~xpevents.Client` (inside a request or an app context)."""
