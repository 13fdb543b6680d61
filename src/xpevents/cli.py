"""The ``xpevents`` command line (also ``python -m xpevents``)."""

from __future__ import annotations

import click

from xpevents._version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="xpevents")
def main() -> None:
    """xpevents: fast, durable, batching delivery of experimentation events."""


@main.command("demo")
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
    from xpevents.relay.cli import relay_command
    from xpevents.relay.forward import forward_command
    from xpevents.spool.cli import spool_command

    main.add_command(collector_command, "collector")
    main.add_command(relay_command, "relay")
    main.add_command(forward_command, "forward")
    main.add_command(spool_command, "spool")


_register()
