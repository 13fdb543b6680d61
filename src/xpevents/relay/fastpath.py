"""The relay's ASGI entry point: event API POSTs straight to the handler, the rest to Starlette.

``POST /v1/events`` and ``POST /eu/v1/events`` (and their trailing-slash forms) are
the relay's hot path: every request of every SDK. Starlette's middleware stack,
router and ``Request`` cost about a tenth of the relay's CPU per request in the
profile of issue 16, for nothing the relay uses; :class:`EventFastPath` answers those
requests from the raw ASGI ``scope``/``receive`` with the same handler the Starlette
routes call (:meth:`Relay.ingest <xpevents.relay.app.Relay.ingest>`), so the answers
are the same either way. Every other request (another method on those paths included:
``405`` from the router) goes to the Starlette application unchanged.

An exception out of the handler is answered as Starlette's ``ServerErrorMiddleware``
answers it (``500 Internal Server Error``, plain text) and re-raised for the server
to log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["EVENT_PATHS", "EventFastPath"]

EVENT_PATHS: Final = {
    "/v1/events": "us",
    "/v1/events/": "us",
    "/eu/v1/events": "eu",
    "/eu/v1/events/": "eu",
}
"""Path -> region of the event API routes (``xpevents.serving.endpoints``)."""

Handler = Callable[[Scope, Receive, str], Awaitable[Response]]

_SERVER_ERROR: Final = PlainTextResponse("Internal Server Error", status_code=500)


class EventFastPath:
    """ASGI application: ``handle(scope, receive, region)`` for event POSTs, else ``app``."""

    __slots__ = ("_app", "_handle")

    def __init__(self, handle: Handler, app: ASGIApp) -> None:
        self._handle = handle
        self._app = app

    @property
    def app(self) -> ASGIApp:
        """The application every other request goes to (the Starlette app)."""
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            region = EVENT_PATHS.get(scope["path"])
            if region is not None:
                try:
                    response = await self._handle(scope, receive, region)
                except Exception:
                    await _SERVER_ERROR(scope, receive, send)
                    raise
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)
