"""Serving the collector with uvicorn, including connections dropped on purpose.

ASGI has no way to say "close the connection without answering", so the collector
runs uvicorn with :class:`DropCapableH11Protocol`: an ``H11Protocol`` that hands each
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

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from xpevents.collector.app import ABORT_EXTENSION, Collector
from xpevents.errors import XpeventsError

__all__ = ["CollectorServer", "DropCapableH11Protocol"]

logger = logging.getLogger(__name__)


class DropCapableH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus an ASGI extension that drops the connection."""

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


class _Server(uvicorn.Server):
    """uvicorn.Server that exits cleanly on SIGINT/SIGTERM.

    uvicorn re-raises the captured signal after a graceful shutdown (so the process
    dies of it); the collector's command exits with status 0 instead.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket bound to ``host:port`` (``port=0``: a free one)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    if not infos:  # pragma: no cover - getaddrinfo raises instead
        raise XpeventsError(f"cannot resolve host {host!r}")
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class CollectorServer:
    """A :class:`Collector` served by uvicorn on ``host:port``.

    Args:
        collector: the collector to serve.
        host: interface to bind (default loopback).
        port: TCP port; ``0`` picks a free one (see :attr:`port` once bound).
        log_level: uvicorn's log level.

    The socket is bound in the constructor, so :attr:`url` is known at once; raises
    ``OSError`` when the address is taken.
    """

    def __init__(
        self,
        collector: Collector,
        *,
        host: str = "127.0.0.1",
        port: int = 8788,
        log_level: str = "warning",
    ) -> None:
        self.collector = collector
        self.host = host
        self._socket = bind_socket(host, port)
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            collector.app,
            http=DropCapableH11Protocol,
            lifespan="off",
            log_level=log_level,
            access_log=False,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=5,
        )
        self._server = _Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8788``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def serve(self, on_started: Callable[[], None] | None = None) -> None:
        """Serve until :meth:`stop` or (in the main thread) SIGINT/SIGTERM."""
        task = asyncio.ensure_future(self._server.serve(sockets=[self._socket]))
        try:
            while not self._server.started:
                if task.done():
                    break
                await asyncio.sleep(0.005)
            if self._server.started and on_started is not None:
                on_started()
            await task
        finally:
            if not task.done():  # cancelled from outside
                self._server.should_exit = True
                await task
            self._socket.close()

    def run(self, on_started: Callable[[], None] | None = None) -> None:
        """Serve in the calling thread until stopped; ``on_started`` runs once listening."""
        asyncio.run(self.serve(on_started))

    def start(self, timeout: float = 10.0) -> CollectorServer:
        """Serve in a daemon thread; return once listening (``TimeoutError`` otherwise)."""
        started = threading.Event()
        self._thread = threading.Thread(
            target=self.run, args=(started.set,), name="xpevents-collector", daemon=True
        )
        self._thread.start()
        if not started.wait(timeout):
            self.stop()
            raise TimeoutError(f"collector did not start listening on {self.url} in {timeout}s")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to finish and wait for its thread (if started with :meth:`start`)."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._socket.close()  # idempotent; releases the port if serving never started

    def __enter__(self) -> CollectorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
