"""The ``xpevents`` command line (also ``python -m xpevents``)."""

from __future__ import annotations

import click

from xpevents._version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="xpevents")
def main() -> None:
    """xpevents: fast, durable, batching delivery of experimentation events."""


def _register() -> None:
    # Subcommands live next to the code they drive; each module exposes one click command.
    from xpevents.collector.cli import collector_command

    main.add_command(collector_command, "collector")


_register()
