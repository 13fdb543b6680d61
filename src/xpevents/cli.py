"""The ``xpevents`` command line (also ``python -m xpevents``)."""

from __future__ import annotations

import os
import sys
from typing import Any

import click
from click.core import ParameterSource

from xpevents._version import __version__
from xpevents.errors import XpeventsError

DEBUG_VARIABLE = "XPEVENTS_DEBUG"
"""Set to 1 to see the traceback of an unexpected error instead of one line."""


def _auto_variable(exc: click.BadParameter) -> str | None:
    """The XPEVENTS_* variable a bad value came from, when click does not name it itself
    (it does for an option with an explicit ``envvar=``, not for the automatic ones)."""
    ctx, param = exc.ctx, exc.param
    if ctx is None or param is None or param.name is None or param.envvar:
        return None
    if ctx.get_parameter_source(param.name) is not ParameterSource.ENVIRONMENT:
        return None
    prefix = ctx.auto_envvar_prefix
    return f"{prefix}_{param.name.upper()}" if prefix else None


class _Main(click.Group):
    """The top command: an xpevents error is one ``Error:`` line, and so is an unexpected
    exception (``XPEVENTS_DEBUG=1`` shows its traceback). A bad value read from the
    environment names its variable."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.BadParameter as exc:
            variable = _auto_variable(exc)
            if variable is None:
                raise
            raise click.BadParameter(
                f"{exc.message} (from the environment variable {variable})",
                ctx=exc.ctx,
                param=exc.param,
            ) from None
        except XpeventsError as exc:
            raise click.ClickException(str(exc)) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get(DEBUG_VARIABLE):
                raise
            click.echo(
                f"Error: unexpected {type(exc).__name__}: {exc} (a bug: please report it; "
                f"{DEBUG_VARIABLE}=1 shows the traceback)",
                err=True,
            )
            sys.exit(1)


@click.group(
    cls=_Main,
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "XPEVENTS"},
)
@click.version_option(__version__, prog_name="xpevents")
def main() -> None:
    """xpevents: fast, durable, batching delivery of experimentation events.

    Every option can also be set in the environment as XPEVENTS_<COMMAND>_<OPTION>
    (e.g. XPEVENTS_COLLECTOR_PORT); --help lists each variable.
    """


@main.command("demo", short_help="The whole pipeline on loopback, and what arrived.")
@click.option(
    "--users",
    default=2000,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Simulated users; each activates 3 experiments, decides 2 flags and "
    "converts with probability 0.3.",
)
@click.option(
    "--dispatcher",
    "dispatcher_kind",
    type=click.Choice(["batch", "default"]),
    default=None,
    help="batch: BatchDispatcher (non-blocking, the default); "
    "default: the synchronous DefaultEventDispatcher.",
)
@click.option(
    "--latency-ms",
    default=0,
    show_default=True,
    type=click.IntRange(0, 60_000),
    help="Latency the collector adds to every request.",
)
@click.option(
    "--fail-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 0.9),
    help="Fraction of requests the collector answers 500/503.",
)
@click.option("--seed", default=1, show_default=True, type=int, help="Random seed.")
def demo_command(
    users: int, dispatcher_kind: str | None, latency_ms: int, fail_rate: float, seed: int
) -> None:
    """Run the whole pipeline on loopback and show what arrived."""
    from xpevents.demo import run

    kind = dispatcher_kind or "batch"
    summary = run(
        users=users,
        dispatcher_kind=kind,
        latency_ms=latency_ms,
        fail_rate=fail_rate,
        seed=seed,
    )
    if summary["collector"]["unique_events"] < summary["visitors_dispatched"]:
        raise click.ClickException("not every dispatched event reached the collector")


def _register() -> None:
    # Subcommands live next to the code they drive; each module exposes one click command.
    from xpevents.collector.cli import collector_command
    from xpevents.inspect.cli import datafile_command, decide_command
    from xpevents.relay.cli import relay_command
    from xpevents.relay.forward import forward_command
    from xpevents.spool.cli import spool_command

    collector_command.short_help = "An events-API-compatible sink with faults and stats."
    relay_command.short_help = "Accept any SDK's events, spool durably, forward upstream."
    for name, summary in (
        ("replay", "Send dead letters (or waiting retries) again."),
        ("stats", "Depth, oldest event, leases and dead letters."),
    ):
        spool_command.commands[name].short_help = summary
    main.add_command(collector_command, "collector")
    main.add_command(datafile_command, "datafile")
    main.add_command(decide_command, "decide")
    main.add_command(relay_command, "relay")
    main.add_command(forward_command, "forward")
    main.add_command(spool_command, "spool")
    _show_envvars(main)


def _show_envvars(command: click.Command) -> None:
    # auto_envvar_prefix gives every option a variable; make --help say which.
    for param in command.params:
        if isinstance(param, click.Option) and not param.is_eager:
            param.show_envvar = True
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _show_envvars(sub)


_register()
