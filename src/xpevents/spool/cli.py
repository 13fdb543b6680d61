"""``xpevents spool``: inspect, replay and purge a durable spool (SQLite or Redis)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from xpevents.errors import ConfigError, SpoolError
from xpevents.spool.base import DeadLetter, Spool, SpoolStats
from xpevents.spool.retarget import replay_to

logger = logging.getLogger("xpevents.spool.cli")


def _open(url: str) -> Spool:
    """Open an existing spool for inspection (never creates a SQLite file)."""
    from xpevents.spool import open_spool

    options: dict[str, Any] = {}
    if url == "memory://":
        raise click.ClickException(
            "memory:// spools live inside one process; there is nothing to inspect from here"
        )
    if url.startswith("sqlite:") or "://" not in url:
        options["create"] = False
    if url.startswith(("redis://", "rediss://", "unix://")):
        _redis_stream_exists(url)
    try:
        if "://" not in url and not url.startswith("sqlite:"):
            from pathlib import Path

            return open_spool(Path(url), **options)
        return open_spool(url, **options)
    except (ConfigError, SpoolError) as error:
        raise click.ClickException(str(error)) from error


def _redis_stream_exists(url: str) -> None:
    """Inspecting never writes: refuse a Redis URL whose stream does not exist."""
    import redis

    from xpevents.spool.redis.schema import unreachable
    from xpevents.spool.redis.url import from_url

    try:
        factory, shown, options = from_url(url)
        client = factory()
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    try:
        exists = client.exists(options["stream"])
    except redis.RedisError as error:
        raise click.ClickException(f"{shown}: {unreachable(client, error)}") from None
    finally:
        client.close()
    if not exists:
        raise click.ClickException(
            f"stream {options['stream']!r} does not exist in {shown}: nothing to inspect "
            "(check the database number and ?stream=)"
        )


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _counts_table(title: str, counts: dict[str, int], label: str) -> Table:
    table = Table(title=title)
    table.add_column(label)
    table.add_column("visitors", justify="right")
    for key, value in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(key, f"{value:,}")
    if not counts:
        table.add_row("(none)", "0")
    return table


@click.group("spool", context_settings={"help_option_names": ["-h", "--help"]})
def spool_command() -> None:
    """Inspect and repair a durable spool.

    URL is 'sqlite:///relative.db', 'sqlite:////absolute.db', a file path, or
    'redis://host:port/db?stream=NAME'.
    """


@spool_command.command("stats")
@click.argument("url")
@click.option("--dead-letters", "show", type=int, default=0, help="Also list N dead letters.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def stats_command(url: str, show: int, as_json: bool) -> None:
    """Depth, age of the oldest event, leases, dead letters and evictions."""
    spool = _open(url)
    try:
        now = time.time()
        stats = spool.stats(now=now)
        dead = spool.dead_letters(limit=show) if show > 0 else []
    except SpoolError as error:
        raise click.ClickException(str(error)) from error
    finally:
        spool.close()
    if as_json:
        click.echo(json.dumps(_stats_json(spool.url, stats, dead, now)))
    else:
        _print_stats(spool.url, stats, dead, now)


def _oldest_age(stats: SpoolStats, now: float) -> float | None:
    return None if stats.oldest_enqueued_at is None else now - stats.oldest_enqueued_at


def _stats_json(url: str, stats: SpoolStats, dead: list[DeadLetter], now: float) -> dict[str, Any]:
    return {
        "url": url,
        "depth": stats.depth,
        "bytes": stats.bytes,
        "leased": stats.leased,
        "oldest_age": _oldest_age(stats, now),
        "dead_letters": dict(stats.dead_letters),
        "evicted": dict(stats.evicted),
        "dead_letter_samples": [
            {
                "id": d.id,
                "reason": d.reason,
                "failed_at": d.failed_at,
                "attempts": d.attempts,
                "visitor": d.visitor.decode("utf-8", "replace"),
            }
            for d in dead
        ],
    }


def _print_stats(url: str, stats: SpoolStats, dead: list[DeadLetter], now: float) -> None:
    console = Console()
    table = Table(title=f"spool {url}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("depth (visitors waiting, leased or retrying)", f"{stats.depth:,}")
    table.add_row("bytes", f"{stats.bytes:,}")
    table.add_row("leased now", f"{stats.leased:,}")
    table.add_row("age of the oldest event", _age(_oldest_age(stats, now)))
    table.add_row("dead letters", f"{sum(stats.dead_letters.values()):,}")
    table.add_row("evicted by the bounds", f"{sum(stats.evicted.values()):,}")
    console.print(table)
    console.print(_counts_table("dead letters by reason", dict(stats.dead_letters), "reason"))
    if stats.evicted:
        console.print(_counts_table("evicted by reason", dict(stats.evicted), "reason"))
    if dead:
        samples = Table(title=f"oldest {len(dead)} dead letters")
        for column in ("id", "reason", "failed", "attempts", "visitor"):
            samples.add_column(column)
        for letter in dead:
            text = letter.visitor.decode("utf-8", "replace")
            samples.add_row(
                str(letter.id),
                letter.reason,
                _age(now - letter.failed_at) + " ago",
                str(letter.attempts),
                text if len(text) <= 80 else text[:77] + "...",
            )
        console.print(samples)


@spool_command.command("replay")
@click.argument("url")
@click.option(
    "--dead-letter",
    is_flag=True,
    help="Put dead letters back in the queue (otherwise: make waiting retries due now).",
)
@click.option("--reason", default=None, help="Only dead letters with this reason.")
@click.option(
    "--to",
    "to",
    default=None,
    help="With --dead-letter: replay them addressed to this URL instead of the one they "
    "failed at (http://host:port maps US and EU paths). Stop the relay first.",
)
def replay_command(url: str, dead_letter: bool, reason: str | None, to: str | None) -> None:
    """Send again: dead letters (--dead-letter), or retries waiting for their backoff."""
    if reason is not None and not dead_letter:
        raise click.UsageError("--reason applies to --dead-letter only")
    if to is not None and not dead_letter:
        raise click.UsageError("--to applies to --dead-letter only")
    spool = _open(url)
    try:
        now = time.time()
        if to is not None:
            count = replay_to(spool, to, reason=reason, now=now)
            what = f"dead letter(s) replayed to {to}"
        elif dead_letter:
            count = spool.replay_dead_letters(reason=reason, now=now)
            what = f"dead letter(s){f' with reason {reason!r}' if reason else ''} replayed"
        else:
            make_due = getattr(spool, "make_due", None)
            if make_due is None:
                raise click.ClickException(f"{spool.url}: this spool cannot reschedule retries")
            count = int(make_due(now=now))
            what = "record(s) waiting for a retry made due now"
    except (SpoolError, ConfigError) as error:
        raise click.ClickException(str(error)) from error
    finally:
        spool.close()
    Console().print(f"{count:,} {what} in {spool.url}")


@spool_command.command("purge")
@click.argument("url")
@click.option("--dead-letter", is_flag=True, help="Required: purge dead letters.")
@click.option("--reason", default=None, help="Only dead letters with this reason.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Only say how many would be purged.")
def purge_command(
    url: str, dead_letter: bool, reason: str | None, yes: bool, dry_run: bool
) -> None:
    """Delete dead letters for good (queued events are never purged)."""
    if not dead_letter:
        raise click.UsageError(
            "purge deletes dead letters only: pass --dead-letter (queued events are never "
            "purged; they leave the spool when delivered or dead-lettered)"
        )
    spool = _open(url)
    try:
        counts = spool.stats(now=time.time()).dead_letters
        matching = counts.get(reason, 0) if reason else sum(counts.values())
        suffix = f" with reason {reason!r}" if reason else ""
        if dry_run or not matching:
            Console().print(f"{matching:,} dead letter(s){suffix} would be purged")
            return
        if not yes:
            click.confirm(f"Delete {matching:,} dead letter(s){suffix} for good?", abort=True)
        count = spool.purge_dead_letters(reason=reason)
    except SpoolError as error:
        raise click.ClickException(str(error)) from error
    finally:
        spool.close()
    Console().print(f"{count:,} dead letter(s){suffix} purged from {spool.url}")
