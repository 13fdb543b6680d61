"""Serving the relay with uvicorn, and its shutdown.

On SIGTERM or SIGINT: stop accepting connections, let requests in progress finish
(those answered 204 are in the spool already), then forward what is due until
``shutdown_timeout`` seconds after the signal; what is left stays in a durable spool
for the next start. A SIGKILL skips all of that and loses nothing that was answered
204: the spool write is committed before the answer.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

from xpevents.relay.app import Relay
from xpevents.relay.remote import RemoteForwarder
from xpevents.serving.direct import DirectProtocol
from xpevents.serving.guard import ConnectionLimits
from xpevents.serving.server import AppServer
from xpevents.stats import DispatchOutcome

__all__ = ["RelayServer"]

logger = logging.getLogger("xpevents.relay")


class RelayServer(AppServer):
    """A :class:`Relay` served by uvicorn on ``host:port`` (``port=0``: a free one).

    The socket is bound in the constructor (``OSError`` when the address is taken),
    so :attr:`url` is known at once. :meth:`run` serves in the calling thread until
    SIGINT/SIGTERM and then closes the relay; :meth:`start`/:meth:`stop` (or the
    context manager) serve from a background thread, for tests. ``limits`` are the
    connection limits (:class:`~xpevents.serving.guard.ConnectionLimits`); ``sock``
    a socket bound already (an ingest worker's, :mod:`xpevents.relay.workers`).
    """

    def __init__(
        self,
        relay: Relay,
        *,
        host: str = "127.0.0.1",
        port: int = 8787,
        log_level: str = "warning",
        limits: ConnectionLimits | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        self.relay = relay
        super().__init__(
            relay.app,
            host=host,
            port=port,
            name="relay",
            log_level=log_level,
            limits=limits,
            on_refused=lambda reason: relay.metrics.rejected.labels(reason).inc(),
            graceful_timeout=max(1, int(relay.settings.shutdown_timeout)),
            sock=sock,
            protocol=type(
                "RelayProtocol", (DirectProtocol,), {"direct_routes": relay.direct_routes()}
            ),
        )
        self._server.on_signal = _log_signal
        self.outcome: DispatchOutcome | None = None

    async def serve(self, on_started: Callable[[], None] | None = None) -> None:
        """Serve until stopped; then close what the relay opened on this event loop."""
        try:
            await super().serve(on_started)
        finally:
            await self.relay.committer.aclose()

    def run(self, on_started: Callable[[], None] | None = None) -> DispatchOutcome:
        """Serve in the calling thread until stopped, then close the relay."""
        try:
            super().run(on_started)
        finally:
            self.outcome = self._close_relay()
        return self.outcome

    def _close_relay(self) -> DispatchOutcome:
        timeout = self.relay.settings.shutdown_timeout
        asked = self._server.stop_requested_at
        if asked is not None:
            timeout = max(0.0, timeout - (time.monotonic() - asked))
        outcome = self.relay.close(timeout=timeout)
        if isinstance(self.relay.forwarder, RemoteForwarder):  # the supervisor forwards
            logger.info("ingest worker %d stopped", os.getpid())
            return outcome
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

    def stop(self, timeout: float | None = None) -> None:
        """Stop serving, close the relay, and wait for the thread (if :meth:`start`-ed)."""
        if self._thread is None:
            self.relay.close(timeout=0)
        wait = self.relay.settings.shutdown_timeout * 2 + 5 if timeout is None else timeout
        super().stop(wait)


def _log_signal(sig: int) -> None:
    logger.info("signal %d: draining requests, then flushing the spool", sig)
