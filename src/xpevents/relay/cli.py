"""``xpevents relay``: accept events on localhost, spool them durably, forward them upstream.

Every option can also come from an environment variable ``XPEVENTS_RELAY_<OPTION>``
(``--upstream-eu`` -> ``XPEVENTS_RELAY_UPSTREAM_EU``) or from a TOML file given with
``--config`` (keys are the option names, with ``-`` or ``_``, at the top level or in a
``[relay]`` table). Precedence: command line > environment > file > defaults.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import click

from xpevents._internal.redact import redact_text, redact_url
from xpevents.errors import ConfigError, SpoolError
from xpevents.relay.app import Relay, RelaySettings
from xpevents.relay.cli_inputs import check_url as _url
from xpevents.relay.cli_inputs import load_config as _load_config
from xpevents.relay.cli_inputs import open_relay_spool
from xpevents.relay.upstreams import resolve_upstreams, warn_if_exposed
from xpevents.serving.command import (
    cannot_listen,
    check_port_free,
    configure_logging,
    connection_limits,
    connection_options,
    log_level_option,
    serve,
)
from xpevents.spool.base import Spool

__all__ = [
    "DEFAULT_SPOOL",
    "ENV_PREFIX",
    "default_datafile_dir",
    "open_relay_spool",
    "relay_command",
    "resolve_upstreams",
    "warn_if_exposed",
]

logger = logging.getLogger("xpevents.relay")

ENV_PREFIX: Final = "XPEVENTS_RELAY"
DEFAULT_SPOOL: Final = "sqlite:///xpevents-relay.db"
"""Relative to the working directory; production passes an absolute path."""

_DEFAULTS = RelaySettings()
_F = TypeVar("_F", bound=Callable[..., Any])


def _env(name: str) -> str:
    return f"{ENV_PREFIX}_{name.upper()}"


_POSITIVE = click.FloatRange(min=0.0, min_open=True)


def _option(flag: str, **kwargs: Any) -> Callable[[_F], _F]:
    """An option that can also come from ``XPEVENTS_RELAY_<NAME>``."""
    return click.option(flag, envvar=_env(_name(flag)), **kwargs)


def _setting(flag: str, type: Any = None, **kwargs: Any) -> Callable[[_F], _F]:
    """An option for the :class:`RelaySettings` field of the same name, with its default."""
    return _option(flag, default=getattr(_DEFAULTS, _name(flag)), type=type, **kwargs)


def _name(flag: str) -> str:
    return flag.split("/")[0].removeprefix("--").replace("-", "_")


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@_option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    is_eager=True,
    expose_value=False,
    callback=_load_config,
    help="TOML file with option values (keys: option names). CLI > env > file > defaults.",
)
@_option("--host", default="127.0.0.1", help="Interface to bind.")
@_option(
    "--port",
    default=8787,
    type=click.IntRange(0, 65535),
    help="TCP port; 0 picks a free one (the real one is printed).",
)
@_option(
    "--spool",
    default=DEFAULT_SPOOL,
    help="Where accepted events wait: sqlite:///relative.db, sqlite:////absolute.db, "
    "redis://host:port/db?stream=NAME (shared by several relays) or memory:// "
    "(NOT durable: a 204 then only means 'in memory').",
)
@_setting("--upstream", callback=_url, help="Where POST /v1/events is forwarded.")
@_setting("--upstream-eu", callback=_url, help="Where POST /eu/v1/events is forwarded.")
@_option(
    "--upstream-base",
    default=None,
    help="http://host:port: US events to /v1/events and EU events to /eu/v1/events "
    "there (instead of --upstream and --upstream-eu). Spooled events always go to the "
    "upstream configured now, whatever it was when they were accepted.",
)
@_setting(
    "--token",
    show_default=False,
    help="Require 'Authorization: Bearer <token>' on event requests (401 otherwise). "
    "Prefer the environment variable or the config file to the command line.",
)
@_setting(
    "--max-body",
    click.IntRange(min=1),
    help="Largest request body in bytes, raw and after gzip decompression (413 above).",
)
@_setting(
    "--read-timeout",
    _POSITIVE,
    help="Seconds a client may take to send its body (408 after).",
)
@_setting(
    "--max-spool-events",
    click.IntRange(min=1),
    help="Visitors the spool may hold; requests beyond get 503 + Retry-After.",
)
@_setting(
    "--max-spool-bytes",
    click.IntRange(min=1),
    help="Visitor bytes the spool may hold; requests beyond get 503 + Retry-After.",
)
@_option(
    "--max-event-age",
    default=7 * 86400.0,
    type=_POSITIVE,
    help="Seconds after which an undelivered visitor is evicted from a durable spool.",
)
@_setting(
    "--retry-after",
    click.IntRange(min=0),
    help="Seconds sent in Retry-After with a 503 (spool full or failing).",
)
@_setting(
    "--batch-size",
    click.IntRange(min=1),
    help="Visitors that make an upstream request due at once.",
)
@_setting(
    "--flush-interval",
    _POSITIVE,
    help="Seconds the oldest waiting visitor waits for a batch to fill.",
)
@_setting(
    "--max-batch-bytes",
    click.IntRange(1024, 3_500_000),
    help="Body size cap of one upstream request.",
)
@_setting(
    "--concurrency",
    click.IntRange(1, 64),
    help="Upstream requests in flight at most (sender threads).",
)
@_setting("--timeout", _POSITIVE, help="Seconds per upstream request.")
@_setting("--gzip/--no-gzip", help="Compress upstream request bodies.")
@_setting(
    "--lease",
    _POSITIVE,
    help="Seconds a sender holds claimed visitors; after a crash they are sent again "
    "once it expires. Keep it above --timeout, and equal on relays sharing a spool.",
)
@_setting(
    "--backoff-base",
    _POSITIVE,
    help="Seconds; first retry waits up to this long (exponential, full jitter).",
)
@_setting("--backoff-max", _POSITIVE, help="Longest wait between retries, in seconds.")
@_setting(
    "--max-retry-age",
    _POSITIVE,
    help="Seconds after the first attempt when a failing visitor is dead-lettered.",
)
@_setting(
    "--proxy",
    callback=_url,
    show_default=False,
    help="HTTP(S) proxy for upstream requests (HTTP_PROXY & co. are ignored).",
)
@_setting(
    "--shutdown-timeout",
    click.FloatRange(min=0.0),
    help="Seconds after SIGTERM to finish requests and forward what is due; the rest "
    "stays in the spool.",
)
@click.option(
    "--sdk-key",
    "sdk_keys",
    multiple=True,
    envvar=_env("sdk_keys"),
    help="Serve this SDK key's datafile on GET /datafiles/KEY.json (repeatable; other "
    "keys get 404, so the relay is no open proxy to the CDN).",
)
@_setting(
    "--datafile-upstream",
    callback=_url,
    show_default=False,
    help="Base URL datafiles are fetched from ({URL}/datafiles/KEY.json). Default: the "
    "CDN (cdn.optimizely.com; config.optimizely.com for the auth path).",
)
@_setting(
    "--datafile-interval",
    _POSITIVE,
    help="Seconds between background refreshes of each datafile (jittered; backoff on errors).",
)
@_setting(
    "--datafile-cache-dir",
    show_default=False,
    help="Directory keeping the last good datafiles (0600). Default: next to a SQLite "
    "spool (SPOOL.db.datafiles/), else memory only.",
)
@_setting(
    "--forwarder",
    click.Choice(["auto", "process", "thread"]),
    help="Where forwarding runs: 'process' (a supervised child process reading the "
    "spool, so ingest does not share a GIL with the senders; durable spools only), "
    "'thread' (sender threads in the relay) or 'auto' (process for sqlite:// and "
    "redis://, thread for memory://).",
)
@_option(
    "--workers",
    default=1,
    type=click.IntRange(1, 64),
    help="Ingest processes sharing the port (SO_REUSEPORT) and the spool. Above 1, this "
    "process supervises them and the one forwarding child process (whatever "
    "--forwarder says); durable spools only.",
)
@connection_options(_env)
@log_level_option(envvar=_env("log_level"))
def relay_command(
    host: str,
    port: int,
    spool: str,
    max_event_age: float,
    upstream_base: str | None,
    log_level: str,
    workers: int,
    **options: Any,
) -> None:
    """Accept events from any SDK on localhost, spool them durably, forward them upstream.

    POST /v1/events and /eu/v1/events take the event API's own format and answer 204
    once the events are in the spool (503 + Retry-After while it is full or failing).
    GET /datafiles/KEY.json serves the datafiles of the --sdk-key keys from a cache
    refreshed in the background. GET /healthz, /readyz and /metrics (Prometheus) serve
    operations. Prints
    "xpevents relay listening on http://HOST:PORT" when ready; SIGTERM drains and
    flushes for --shutdown-timeout seconds, leaving the rest in the spool.
    """
    configure_logging(log_level)
    if options.get("datafile_cache_dir") is None:
        options["datafile_cache_dir"] = default_datafile_dir(spool)
    limits = connection_limits(options, options["retry_after"])
    options.update(resolve_upstreams(options, upstream_base))
    try:
        settings = RelaySettings(**options)
        settings.datafile_settings()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    warn_if_exposed(host, settings.token)
    from xpevents.relay.server import RelayServer

    check_port_free(host, port)  # before the spool file is created
    store = _open_store(spool, settings, max_event_age)
    if workers > 1:
        _serve_workers(
            workers, host, port, spool, store, settings, limits, max_event_age, log_level
        )
        return
    try:
        relay = Relay(
            store, settings, spool_url=spool, max_event_age=max_event_age, log_level=log_level
        )
    except ConfigError as exc:
        store.close()
        raise click.UsageError(str(exc)) from None
    except Exception:
        store.close()
        raise
    try:
        server = RelayServer(relay, host=host, port=port, log_level=log_level, limits=limits)
    except OSError as exc:
        relay.close(timeout=0)
        raise cannot_listen(host, port, exc) from None
    logger.info(
        "relay spool %s (durable: %s); upstream %s, EU %s",
        redact_url(store.url),
        store.durable,
        redact_url(settings.upstream),
        redact_url(settings.upstream_eu),
    )
    serve(server, "relay")


def _serve_workers(
    workers: int,
    host: str,
    port: int,
    spool: str,
    store: Spool,
    settings: RelaySettings,
    limits: Any,
    max_event_age: float,
    log_level: str,
) -> None:
    """``--workers N`` (N > 1): supervise N ingest processes (``relay/workers.py``)."""
    durable = store.durable
    store.close()  # opened once here: created (schema included) before the workers race
    if not durable:
        raise click.UsageError(
            f"--workers {workers} needs a durable --spool (sqlite:///PATH or redis://HOST): "
            "worker processes cannot share a memory spool"
        )
    if settings.forwarder == "thread":
        logger.info("--workers %d: forwarding runs in one child process", workers)
    from xpevents.relay.workers import serve_workers

    logger.info(
        "relay spool %s, %d ingest workers; upstream %s, EU %s",
        redact_url(spool),
        workers,
        redact_url(settings.upstream),
        redact_url(settings.upstream_eu),
    )
    try:
        code = serve_workers(
            workers,
            host=host,
            port=port,
            spool=spool,
            settings=settings,
            limits=limits,
            max_event_age=max_event_age,
            log_level=log_level,
        )
    except OSError as exc:
        raise cannot_listen(host, port, exc) from None
    if code:
        raise SystemExit(code)


def default_datafile_dir(spool: str) -> str | None:
    """Where datafiles are kept for a ``--spool``: beside a SQLite file, else nowhere."""
    if not spool.startswith("sqlite:///"):
        return None
    path = Path(spool.removeprefix("sqlite:///").split("?", 1)[0])
    return str(path.with_name(path.name + ".datafiles"))


def _open_store(spool: str, settings: RelaySettings, max_event_age: float) -> Spool:
    """The ``--spool`` store; a bad URL is a usage error, a failing store a plain one."""
    try:
        return open_relay_spool(
            spool,
            max_events=settings.max_spool_events,
            max_bytes=settings.max_spool_bytes,
            max_event_age=max_event_age,
        )
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--spool") from None
    except SpoolError as exc:
        shown = redact_text(exc, spool)
        raise click.ClickException(f"cannot open --spool {redact_url(spool)}: {shown}") from None
