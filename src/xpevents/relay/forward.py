"""``xpevents forward``: drain a spool other programs write into, and forward upstream.

The relay without its HTTP side. PHP's ``RedisSpoolEventDispatcher`` appends each event
to a Redis stream in the spool's record format (``docs/operations.md``, "The Redis
record format"); ``xpevents forward --spool redis://...`` reads that stream with the
relay's :class:`~xpevents.BatchDispatcher` (batches, retries with backoff, dead
letters, circuit breaker) and sends each visitor to the region's upstream as
configured now (:mod:`xpevents.relay.routing`). Several forwarders may share one
stream: the consumer group hands each record to one of them. SIGTERM or SIGINT stop
it after forwarding what is due for ``--shutdown-timeout`` seconds; the rest stays in
the stream.

With a SQLite spool, a :class:`Forwarder` (here and in the relay's forwarding child)
also checkpoints the spool's write-ahead log every few milliseconds from a thread of its
own (:class:`~xpevents.spool.sqlite.backfill.WalBackfill`), so the writers' commits that
checkpoint find little left to copy.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

import click
import httpx

from xpevents.dispatch.batch import BatchDispatcher
from xpevents.relay.app import RelaySettings
from xpevents.relay.metrics import RelayMetrics
from xpevents.relay.pipeline import FORWARD_HINT, _forwarder, _upstream_client
from xpevents.serving.command import configure_logging, log_level_option
from xpevents.spool.base import Spool
from xpevents.spool.sqlite import SqliteSpool
from xpevents.spool.sqlite.backfill import WalBackfill
from xpevents.stats import DispatchOutcome

__all__ = ["Forwarder", "forward_command"]

logger = logging.getLogger("xpevents.relay.forward")

_DEFAULTS = RelaySettings()
_POSITIVE = click.FloatRange(min=0.0, min_open=True)


class Forwarder:
    """A BatchDispatcher draining ``store`` to the configured upstreams, from now on.

    Args:
        store: an opened spool (usually a ``RedisSpool``); closed by :meth:`close`.
        settings: the relay's settings (upstreams, batching, retries, timeouts).
        http_transport: an httpx transport for upstream requests (tests).
        hint: where the "upstream failing" log line sends the reader (default the
            ``xpevents forward`` wording; the relay's child says ``/metrics``).
    """

    def __init__(
        self,
        store: Spool,
        settings: RelaySettings,
        *,
        http_transport: httpx.BaseTransport | None = None,
        hint: str = FORWARD_HINT,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = RelayMetrics({settings.upstream: "us", settings.upstream_eu: "eu"})
        self._http = _upstream_client(settings, self.metrics, http_transport)
        self.dispatcher: BatchDispatcher = _forwarder(store, self._http, settings, hint=hint)
        self.dispatcher.start()
        self._backfill = _backfill(store)

    def close(self, timeout: float | None = None) -> DispatchOutcome:
        """Forward what is due for ``timeout`` seconds (default ``shutdown_timeout``), stop."""
        seconds = self.settings.shutdown_timeout if timeout is None else timeout
        outcome = self.dispatcher.close(timeout=seconds)
        if self._backfill is not None:
            self._backfill.close()
        try:
            self.store.close()
        except Exception:
            logger.exception("closing spool %s failed", self.store.url)
        self._http.close()
        return outcome


def _backfill(store: Spool) -> WalBackfill | None:
    """For a SQLite spool, copy its log into the database file from a thread of this
    process (:mod:`xpevents.spool.sqlite.backfill`): the writers' commits that
    checkpoint (the relay's ingest, the applications') then find little left to copy."""
    if not isinstance(store, SqliteSpool):
        return None
    return WalBackfill(store.path, sync=store.sync).start()


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--spool", required=True, help="The spool to drain, e.g. redis://host:6379/0.")
@click.option("--upstream", default=_DEFAULTS.upstream, help="Where US events go.")
@click.option("--upstream-eu", default=_DEFAULTS.upstream_eu, help="Where EU events go.")
@click.option(
    "--upstream-base",
    default=None,
    help="http://host:port: US events to /v1/events, EU events to /eu/v1/events there "
    "(instead of --upstream and --upstream-eu).",
)
@click.option("--batch-size", default=_DEFAULTS.batch_size, type=click.IntRange(min=1))
@click.option("--flush-interval", default=_DEFAULTS.flush_interval, type=_POSITIVE)
@click.option("--concurrency", default=_DEFAULTS.concurrency, type=click.IntRange(1, 64))
@click.option("--timeout", default=_DEFAULTS.timeout, type=_POSITIVE)
@click.option("--gzip/--no-gzip", default=_DEFAULTS.gzip)
@click.option("--lease", default=_DEFAULTS.lease, type=_POSITIVE)
@click.option("--backoff-base", default=_DEFAULTS.backoff_base, type=_POSITIVE)
@click.option("--backoff-max", default=_DEFAULTS.backoff_max, type=_POSITIVE)
@click.option("--max-retry-age", default=_DEFAULTS.max_retry_age, type=_POSITIVE)
@click.option("--proxy", default=None, help="HTTP(S) proxy for upstream requests.")
@click.option(
    "--shutdown-timeout", default=_DEFAULTS.shutdown_timeout, type=click.FloatRange(min=0.0)
)
@log_level_option()
def forward_command(spool: str, upstream_base: str | None, log_level: str, **options: Any) -> None:
    """Forward what other programs append to a spool (PHP's RedisSpoolEventDispatcher).

    Prints "xpevents forward running on SPOOL" once it reads the spool, then runs
    until SIGTERM/SIGINT.
    """
    from xpevents.relay.cli import open_relay_spool, resolve_upstreams

    configure_logging(log_level)
    options.update(resolve_upstreams(options, upstream_base))
    settings = RelaySettings(**options)
    try:
        store = open_relay_spool(
            spool,
            max_events=settings.max_spool_events,
            max_bytes=settings.max_spool_bytes,
            max_event_age=7 * 86400.0,
        )
    except Exception as exc:
        raise click.ClickException(f"cannot open --spool: {exc}") from None
    forwarder = Forwarder(store, settings)
    stop = threading.Event()

    def on_signal(sig: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    sys.stdout.write(f"xpevents forward running on {store.url}\n")
    sys.stdout.flush()
    logger.info("forwarding %s to %s (EU %s)", store.url, settings.upstream, settings.upstream_eu)
    while not stop.wait(1.0):
        pass
    outcome = forwarder.close()
    logger.info(
        "forward stopped: %d delivered at shutdown, %d pending", outcome.delivered, outcome.pending
    )
