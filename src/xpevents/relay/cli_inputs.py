"""What ``xpevents relay`` reads before it starts: the ``--config`` TOML file, the
upstream URLs, and the spool (:func:`open_relay_spool`, also used by ingest workers)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import click

from xpevents._internal.names import unknown
from xpevents.errors import ConfigError
from xpevents.relay.writer import store_bounds
from xpevents.send.endpoint import validate_url
from xpevents.spool.base import Spool

__all__ = ["RELAY_CHECKPOINT_PAGES", "check_url", "load_config", "open_relay_spool"]


def load_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """Eager callback of ``--config``: the file's values become click's default_map."""
    if value is None:
        return None
    try:
        data = tomllib.loads(value.read_text(encoding="utf-8"))
    except OSError as exc:
        raise click.BadParameter(f"cannot read {value}: {exc}", ctx, param) from None
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{value} is not valid TOML: {exc}", ctx, param) from None
    section = data.get("relay", data)
    if not isinstance(section, dict):
        raise click.BadParameter(f"{value}: [relay] must be a table", ctx, param)
    known = {p.name for p in ctx.command.params if p.name and p.name != "config"}
    values: dict[str, Any] = {}
    for key, item in section.items():
        name = key.replace("-", "_")
        if name not in known:
            raise click.BadParameter(f"{value}: {unknown('key', key, sorted(known))}", ctx, param)
        values[name] = item
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return value


def check_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Callback of the upstream options: an absolute http(s) URL, or a usage error."""
    if value is None:
        return None
    try:
        return validate_url(value, argument=f"--{(param.name or '').replace('_', '-')}")
    except ConfigError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


RELAY_CHECKPOINT_PAGES = 500
"""``checkpoint_pages`` of a SQLite spool the relay opens, unless its URL sets one: a
checkpoint runs inside an ingest commit, so its pause is a request's. At 10 clients wrk's
p99 was 4.0-6.4 ms with SQLite's 1000 pages, 2.9-3.4 ms with 500 and 3.1-3.4 ms with 250,
at 11,500-12,800, 11,100-12,500 and 10,800-11,600 req/s (issue 16, eighth pass)."""


def open_relay_spool(spec: str, *, max_events: int, max_bytes: int, max_event_age: float) -> Spool:
    """Open the relay's store for ``spec`` (``memory://``, ``sqlite:///...``, ``redis://...``).

    A SQLite spool checkpoints every :data:`RELAY_CHECKPOINT_PAGES` pages unless its
    URL says ``?checkpoint_pages=N``. Durable stores get eviction bounds above the
    relay's admission limits (see :func:`~xpevents.relay.writer.store_bounds`): a full
    spool refuses requests, it never evicts what was accepted. A memory spool holds
    ``max_events`` visitors.

    Raises:
        ConfigError, SpoolError: as :func:`xpevents.spool.open_spool`.
    """
    from xpevents.spool import open_spool
    from xpevents.spool.memory import MemorySpool
    from xpevents.spool.sqlite import path_from_url

    if spec == "memory://":
        return MemorySpool(max_events, "drop_newest")
    events, nbytes = store_bounds(max_events, max_bytes)
    extra: dict[str, Any] = {}
    if spec.startswith("sqlite:") and "checkpoint_pages" not in path_from_url(spec)[1]:
        extra["checkpoint_pages"] = RELAY_CHECKPOINT_PAGES
    return open_spool(
        spec,
        max_spool_events=events,
        max_spool_bytes=nbytes,
        max_event_age=max_event_age,
        **extra,
    )
