"""``xpevents collector``: run an events-API-compatible sink with fault injection."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from xpevents.collector.app import DEFAULT_MAX_BODY, Collector
from xpevents.collector.faults import FaultSettings
from xpevents.collector.server import CollectorServer
from xpevents.errors import ConfigError

__all__ = ["collector_command"]

logger = logging.getLogger("xpevents.collector.cli")

_RATE = click.FloatRange(0.0, 1.0)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option(
    "--port",
    default=8788,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port; 0 picks a free one (printed on start).",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite file for accepted events (WAL mode). Default: in memory.",
)
@click.option(
    "--max-body",
    default=DEFAULT_MAX_BODY,
    show_default=True,
    type=click.IntRange(min=1),
    help="Largest request body in bytes, raw and after gzip decompression (413 above).",
)
@click.option(
    "--latency-ms",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0.0),
    help="Delay before each events request is answered.",
)
@click.option(
    "--fail-rate",
    default=0.0,
    show_default=True,
    type=_RATE,
    help="Share of events requests answered 500 or 503 (half each).",
)
@click.option(
    "--rate-429",
    "rate_429",
    default=0.0,
    show_default=True,
    type=_RATE,
    help="Share of events requests answered 429 with Retry-After.",
)
@click.option(
    "--retry-after",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds sent in the Retry-After header of a 429 (fractions allowed, e.g. 0.2).",
)
@click.option(
    "--drop-rate",
    default=0.0,
    show_default=True,
    type=_RATE,
    help="Share of events requests whose connection is closed with no response.",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed of the fault generator (reproducible fault sequence).",
)
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    help="Log level (logs go to stderr).",
)
def collector_command(
    host: str,
    port: int,
    db: Path | None,
    max_body: int,
    latency_ms: float,
    fail_rate: float,
    rate_429: float,
    retry_after: float,
    drop_rate: float,
    seed: int | None,
    log_level: str,
) -> None:
    """Run an Optimizely-events-API-compatible sink: POST /v1/events and /eu/v1/events.

    Payloads are validated, de-duplicated on (entity_id, uuid, timestamp) and stored;
    GET /stats, GET /events, GET|POST /control (fault settings at runtime) and
    POST /reset serve tests and benchmarks. Prints one line,
    "xpevents collector listening on http://HOST:PORT", then serves until SIGINT or
    SIGTERM.
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        faults = FaultSettings(
            latency_ms=latency_ms,
            fail_rate=fail_rate,
            rate_429=rate_429,
            retry_after=retry_after,
            drop_rate=drop_rate,
            seed=seed,
        ).validate()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        collector = Collector(db=db, max_body=max_body, faults=faults)
    except Exception as exc:  # sqlite3 errors: unwritable path, not a database, ...
        raise click.ClickException(f"cannot open --db {db}: {exc}") from None
    try:
        try:
            server = CollectorServer(collector, host=host, port=port, log_level=log_level)
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from None

        def announce() -> None:
            sys.stdout.write(f"xpevents collector listening on {server.url}\n")
            sys.stdout.flush()

        server.run(on_started=announce)
    finally:
        collector.close()
    logger.info("collector stopped")
