"""Serving an ASGI app with uvicorn on a socket bound up front (collector and relay).

:class:`AppServer` binds the listening socket in its constructor (so ``port=0`` yields
the real port, and :attr:`~AppServer.url` is known, before serving starts), then runs
uvicorn either in the calling thread until SIGINT/SIGTERM (:meth:`~AppServer.run`, what
the commands do) or in a background thread (:meth:`~AppServer.start` /
:meth:`~AppServer.stop` or the context manager, handy in tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Generator
from types import FrameType, TracebackType
from typing import Any, Self

import uvicorn

from xpevents.errors import XpeventsError
from xpevents.serving.guard import ConnectionLimits, GuardedProtocol, guarded_protocol

__all__ = ["AppServer", "bind_socket"]


class _Server(uvicorn.Server):
    """uvicorn.Server that notes when it was told to stop and exits with status 0.

    uvicorn re-raises the captured signal after a graceful shutdown (so the process
    dies of it); our commands exit cleanly instead. Signals are only captured in the
    main thread (a server started from a test's thread leaves them alone).
    """

    stop_requested_at: float | None = None
    on_signal: Callable[[int], None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.stop_requested_at is None:
            self.stop_requested_at = time.monotonic()
            if self.on_signal is not None:
                self.on_signal(sig)
        super().handle_exit(sig, frame)

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


class AppServer:
    """An ASGI app served by uvicorn on ``host:port``.

    Args:
        app: the ASGI application.
        host: interface to bind (default loopback).
        port: TCP port; ``0`` picks a free one (see :attr:`port`).
        name: used in thread names and error messages.
        log_level: uvicorn's log level.
        graceful_timeout: seconds uvicorn lets requests in progress finish at shutdown.
        limits: connection limits (header size and deadline, keep-alive, saturation);
            default :class:`~xpevents.serving.guard.ConnectionLimits`'s defaults.
        protocol: the HTTP protocol class, a :class:`GuardedProtocol` (bound to
            ``limits``).
        on_refused: called with the reason of each connection-level refusal.
        sock: a socket bound already (an ingest worker's, ``relay/workers.py``), served
            instead of binding ``host:port``; closed with the server.
        **uvicorn_options: more ``uvicorn.Config`` options.

    Raises ``OSError`` when the address is taken.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str,
        port: int,
        name: str,
        log_level: str = "warning",
        graceful_timeout: int = 5,
        limits: ConnectionLimits | None = None,
        protocol: type[GuardedProtocol] = GuardedProtocol,
        on_refused: Callable[[str], object] | None = None,
        sock: socket.socket | None = None,
        **uvicorn_options: Any,
    ) -> None:
        limits = limits or ConnectionLimits()
        self.host = host
        self.name = name
        self._socket = bind_socket(host, port) if sock is None else sock
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_level=log_level,
            access_log=False,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=graceful_timeout,
            http=guarded_protocol(limits, protocol, on_refused),
            ws="none",  # upgrades are ignored (guard.py), whatever is installed
            **{**limits.uvicorn_options(), **uvicorn_options},
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

    def run(self, on_started: Callable[[], None] | None = None) -> object:
        """Serve in the calling thread until stopped; ``on_started`` runs once listening."""
        asyncio.run(self.serve(on_started))
        return None

    def start(self, timeout: float = 10.0) -> Self:
        """Serve in a daemon thread; return once listening (``TimeoutError`` otherwise)."""
        started = threading.Event()
        self._thread = threading.Thread(
            target=self.run, args=(started.set,), name=f"xpevents-{self.name}", daemon=True
        )
        self._thread.start()
        if not started.wait(timeout):
            self.stop()
            raise TimeoutError(f"{self.name} did not start listening on {self.url} in {timeout}s")
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Ask the server to finish and wait for its thread (if started with :meth:`start`)."""
        if self._server.stop_requested_at is None:
            self._server.stop_requested_at = time.monotonic()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10.0 if timeout is None else timeout)
            self._thread = None
        self._socket.close()  # idempotent; releases the port if serving never started

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
