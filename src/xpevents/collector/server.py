"""Serving the collector with uvicorn, including connections dropped on purpose.

ASGI has no way to say "close the connection without answering", so the collector
runs uvicorn with :class:`DropCapableProtocol`: the services' protocol, handing each
request an abort callable in ``scope["extensions"]["xpevents.abort"]``. Calling it
marks the request as disconnected (so uvicorn neither writes the response nor
substitutes a 500) and aborts the TCP transport: the client sees the connection
closed with no response at all.

:class:`CollectorServer` binds the listening socket itself (so ``port=0`` yields the
real port before serving starts) and runs either in the calling thread until
SIGINT/SIGTERM (:meth:`CollectorServer.run`, what the CLI does) or in a background
thread (:meth:`CollectorServer.start` / context manager, handy in tests).
"""

from __future__ import annotations

from typing import Any

from xpevents.collector.app import ABORT_EXTENSION, Collector
from xpevents.serving.guard import ConnectionLimits, GuardedProtocol
from xpevents.serving.server import AppServer

__all__ = ["CollectorServer", "DropCapableProtocol"]


class DropCapableProtocol(GuardedProtocol):
    """The services' protocol plus an ASGI extension that drops the connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inner = self.app
        extension = {"abort": self._abort_request}

        async def app(scope: Any, receive: Any, send: Any) -> None:
            scope["extensions"] = {**(scope.get("extensions") or {}), ABORT_EXTENSION: extension}
            await inner(scope, receive, send)

        self.app = app

    def _abort_request(self) -> None:
        cycle = self.cycle
        if cycle is not None:
            # Nothing may be written any more, and no 500 is substituted when the app
            # returns without a response: uvicorn skips both for a disconnected cycle.
            cycle.disconnected = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class CollectorServer(AppServer):
    """A :class:`Collector` served by uvicorn on ``host:port``.

    Args:
        collector: the collector to serve.
        host: interface to bind (default loopback).
        port: TCP port; ``0`` picks a free one (see :attr:`port` once bound).
        log_level: uvicorn's log level.
        limits: connection limits (:class:`~xpevents.serving.guard.ConnectionLimits`).

    The socket is bound in the constructor, so :attr:`url` is known at once; raises
    ``OSError`` when the address is taken. Connections can be dropped on purpose
    (:class:`DropCapableProtocol`).
    """

    def __init__(
        self,
        collector: Collector,
        *,
        host: str = "127.0.0.1",
        port: int = 8788,
        log_level: str = "warning",
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.collector = collector
        super().__init__(
            collector.app,
            host=host,
            port=port,
            name="collector",
            log_level=log_level,
            limits=limits,
            protocol=DropCapableProtocol,
            on_refused=lambda reason: collector.stats.rejected.update((reason,)),
        )
