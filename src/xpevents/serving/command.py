"""What ``xpevents relay`` and ``xpevents collector`` do alike around their server.

Both log to stderr in one format, turn a taken address into a usage-level error,
and print one line on stdout once they listen: ``xpevents NAME listening on URL``,
which :mod:`xpevents.serving.process` (and so ``run_collector``/``run_relay``) waits for.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from xpevents.serving.process import listening_prefix

if TYPE_CHECKING:
    from xpevents.serving.server import AppServer

__all__ = ["cannot_listen", "configure_logging", "log_level_option", "serve"]

_F = TypeVar("_F", bound=Callable[..., Any])

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_level_option(**extra: Any) -> Callable[[_F], _F]:
    """The ``--log-level`` option (``extra``: more ``click.option`` settings)."""
    return click.option(
        "--log-level",
        default="warning",
        type=click.Choice(["critical", "error", "warning", "info", "debug"]),
        help="Log level (logs go to stderr).",
        **extra,
    )


def configure_logging(log_level: str) -> None:
    """Log records at ``log_level`` and above to stderr, with time, level and logger."""
    logging.basicConfig(level=log_level.upper(), format=_LOG_FORMAT, stream=sys.stderr)


def cannot_listen(host: str, port: int, exc: OSError) -> click.ClickException:
    """The error a command exits with when ``host:port`` cannot be bound."""
    return click.ClickException(f"cannot listen on {host}:{port}: {exc}")


def serve(server: AppServer, name: str) -> object:
    """Serve until SIGINT/SIGTERM, printing the "listening on" line once listening."""

    def announce() -> None:
        sys.stdout.write(f"{listening_prefix(name)}{server.url}\n")
        sys.stdout.flush()

    return server.run(on_started=announce)
