"""``xpevents collector``: run an events-API-compatible sink with fault injection."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from xpevents._internal.paths import missing_directory
from xpevents.collector.app import DEFAULT_MAX_BODY, STRICT_MODES, Collector
from xpevents.collector.dashboard.datafile import load_datafile
from xpevents.collector.faults import FaultSettings
from xpevents.collector.server import CollectorServer
from xpevents.errors import ConfigError
from xpevents.serving.command import (
    cannot_listen,
    configure_logging,
    connection_limits,
    connection_options,
    log_level_option,
    serve,
)

__all__ = ["collector_command"]

logger = logging.getLogger("xpevents.collector.cli")

_RATE = click.FloatRange(0.0, 1.0)
_FAULT_DEFAULTS = FaultSettings()
_F = TypeVar("_F", bound=Callable[..., Any])


def _fault(flag: str, type: click.ParamType[Any], help: str) -> Callable[[_F], _F]:
    """An option for the :class:`FaultSettings` field of the same name, with its default."""
    name = flag.removeprefix("--").replace("-", "_")
    return click.option(
        flag, name, default=getattr(_FAULT_DEFAULTS, name), show_default=True, type=type, help=help
    )


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
@_fault(
    "--latency-ms",
    click.FloatRange(min=0.0),
    "Delay before each events request is answered.",
)
@_fault("--fail-rate", _RATE, "Share of events requests answered 500 or 503 (half each).")
@_fault("--rate-429", _RATE, "Share of events requests answered 429 with Retry-After.")
@_fault(
    "--retry-after",
    click.FloatRange(min=0),
    "Seconds sent in the Retry-After header of a 429 (fractions allowed, e.g. 0.2).",
)
@_fault(
    "--drop-rate",
    _RATE,
    "Share of events requests whose connection is closed with no response.",
)
@_fault(
    "--html-rate",
    _RATE,
    "Share of requests answered 200 with an HTML error page (events and datafiles).",
)
@click.option(
    "--datafile",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Project datafile: the dashboard shows keys for ids and checks sample ratios.",
)
@click.option(
    "--sdk-key",
    default=None,
    help="Instead of --datafile: fetch this SDK key's datafile once at start.",
)
@click.option(
    "--datafile-url-template",
    default=None,
    help="Where --sdk-key is fetched, with {sdk_key}. "
    "[default: https://cdn.optimizely.com/datafiles/{sdk_key}.json]",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed of the fault generator (reproducible fault sequence).",
)
@click.option(
    "--strict",
    type=click.Choice(STRICT_MODES),
    default="off",
    show_default=True,
    is_flag=False,
    flag_value="warn",
    help="Check payloads against the precise schema: 'warn' (what --strict alone means) "
    "reports SDK bugs as schema_warnings in /stats; 'refuse' answers them 400 with "
    "their JSON path. 'off' accepts what the Event API accepts.",
)
@click.option(
    "--read-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0.0, min_open=True),
    help="Seconds a client may take to send its body (408 after).",
)
@connection_options()
@log_level_option(show_default=True)
def collector_command(
    host: str,
    port: int,
    db: Path | None,
    max_body: int,
    datafile: Path | None,
    sdk_key: str | None,
    datafile_url_template: str | None,
    seed: int | None,
    strict: str,
    read_timeout: float,
    log_level: str,
    **options: Any,
) -> None:
    """Run an Optimizely-events-API-compatible sink: POST /v1/events and /eu/v1/events.

    Payloads are accepted as the Event API accepts them (--strict checks them against
    the schema), de-duplicated on (entity_id, uuid, timestamp) and stored;
    GET /stats, GET /events, GET|POST /control (fault settings at runtime) and
    POST /reset serve tests and benchmarks; PUT /datafiles/KEY.json serves a
    datafile on GET /datafiles/KEY.json like the CDN (ETag, 304, the auth path with
    ?access_token=). Prints one line,
    "xpevents collector listening on http://HOST:PORT", then serves until SIGINT or
    SIGTERM.
    """
    configure_logging(log_level)
    limits = connection_limits(options)
    try:
        settings = FaultSettings(**options, seed=seed).validate()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    config = load_datafile(datafile, sdk_key=sdk_key, url_template=datafile_url_template)
    if db is not None and (problem := missing_directory(db)) is not None:
        raise click.ClickException(f"cannot open --db {db}: {problem}")
    try:
        collector = Collector(
            db=db,
            max_body=max_body,
            faults=settings,
            strict=strict,
            read_timeout=read_timeout,
            datafile=config,
        )
    except Exception as exc:  # sqlite3 errors: unwritable path, not a database, ...
        raise click.ClickException(f"cannot open --db {db}: {exc}") from None
    try:
        try:
            server = CollectorServer(
                collector, host=host, port=port, log_level=log_level, limits=limits
            )
        except OSError as exc:
            raise cannot_listen(host, port, exc) from None
        serve(server, "collector")
    finally:
        collector.close()
    logger.info("collector stopped")
