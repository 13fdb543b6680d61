"""Serving the relay with uvicorn, and its shutdown.

On SIGTERM or SIGINT: stop accepting connections, let requests in progress finish
(those answered 204 are in the spool already), then forward what is due until
``shutdown_timeout`` seconds after the signal; what is left stays in a durable spool
for the next start. A SIGKILL skips all of that and loses nothing that was answered
204: the spool write is committed before the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Generator
from types import FrameType, TracebackType

import uvicorn

# The collector's socket helper is private there; see docs/relay.md.
from xpevents.collector.server import bind_socket
from xpevents.dispatch.stats import DispatchOutcome
from xpevents.relay.app import Relay

__all__ = ["RelayServer"]

logger = logging.getLogger("xpevents.relay")


class _Server(uvicorn.Server):
    """uvicorn.Server that notes when it was told to stop and exits with status 0."""

    stop_requested_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.stop_requested_at is None:
            self.stop_requested_at = time.monotonic()
            logger.info("signal %d: draining requests, then flushing the spool", sig)
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


class RelayServer:
    """A :class:`Relay` served by uvicorn on ``host:port`` (``port=0``: a free one).

    The socket is bound in the constructor (``OSError`` when the address is taken),
    so :attr:`url` is known at once. :meth:`run` serves in the calling thread until
    SIGINT/SIGTERM and then closes the relay; :meth:`start`/:meth:`stop` (or the
    context manager) serve from a background thread, for tests.
    """

    def __init__(
        self,
        relay: Relay,
        *,
        host: str = "127.0.0.1",
        port: int = 8787,
        log_level: str = "warning",
        limit_concurrency: int | None = None,
    ) -> None:
        self.relay = relay
        self.host = host
        self._socket = bind_socket(host, port)
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            relay.app,
            lifespan="off",
            log_level=log_level,
            access_log=False,
            server_header=False,
            date_header=False,
            limit_concurrency=limit_concurrency,
            timeout_graceful_shutdown=max(1, int(relay.settings.shutdown_timeout)),
        )
        self._server = _Server(config)
        self._thread: threading.Thread | None = None
        self.outcome: DispatchOutcome | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8787``."""
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
            if not task.done():
                self._server.should_exit = True
                await task
            self._socket.close()

    def run(self, on_started: Callable[[], None] | None = None) -> DispatchOutcome:
        """Serve in the calling thread until stopped, then close the relay."""
        try:
            asyncio.run(self.serve(on_started))
        finally:
            self.outcome = self._close_relay()
        return self.outcome

    def _close_relay(self) -> DispatchOutcome:
        timeout = self.relay.settings.shutdown_timeout
        asked = self._server.stop_requested_at
        if asked is not None:
            timeout = max(0.0, timeout - (time.monotonic() - asked))
        outcome = self.relay.close(timeout=timeout)
        if outcome.pending:
            where = "kept in the spool" if self.relay.store.durable else "LOST (memory spool)"
            logger.warning(
                "relay stopped: %d delivered during shutdown, %d visitor(s) %s",
                outcome.delivered,
                outcome.pending,
                where,
            )
        else:
            logger.info("relay stopped: %d delivered during shutdown", outcome.delivered)
        return outcome

    def start(self, timeout: float = 10.0) -> RelayServer:
        """Serve in a daemon thread; return once listening (``TimeoutError`` otherwise)."""
        started = threading.Event()
        self._thread = threading.Thread(
            target=self.run, args=(started.set,), name="xpevents-relay", daemon=True
        )
        self._thread.start()
        if not started.wait(timeout):
            self.stop()
            raise TimeoutError(f"relay did not start listening on {self.url} in {timeout}s")
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop serving, close the relay, and wait for the thread (if :meth:`start`-ed)."""
        if self._server.stop_requested_at is None:
            self._server.stop_requested_at = time.monotonic()
        self._server.should_exit = True
        if self._thread is not None:
            wait = self.relay.settings.shutdown_timeout * 2 + 5 if timeout is None else timeout
            self._thread.join(wait)
            self._thread = None
        else:
            self.relay.close(timeout=0)
        self._socket.close()

    def __enter__(self) -> RelayServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
