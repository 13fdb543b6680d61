"""What ``xpevents relay`` and ``xpevents collector`` do alike around their server.

Both log to stderr in one format, turn a taken address into a usage-level error,
and print one line on stdout once they listen: ``xpevents NAME listening on URL``,
which :mod:`xpevents.serving.process` (and so ``run_collector``/``run_relay``) waits for.
"""

from __future__ import annotations

import gc
import logging
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from xpevents.serving.guard import ConnectionLimits
from xpevents.serving.process import listening_prefix

if TYPE_CHECKING:
    from xpevents.serving.server import AppServer

__all__ = [
    "cannot_listen",
    "configure_logging",
    "connection_limits",
    "connection_options",
    "log_level_option",
    "serve",
]

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


_LIMITS = ConnectionLimits()
_LIMIT_OPTIONS: tuple[tuple[str, Any, str], ...] = (
    (
        "--max-connections",
        click.IntRange(min=1),
        "Open connections above which requests are answered 503 + Retry-After (JSON); "
        "/healthz, /readyz, /metrics and /stats are still served, up to 32 more.",
    ),
    (
        "--max-header-bytes",
        click.IntRange(min=256),
        "Largest request line plus headers, in bytes (431 above).",
    ),
    (
        "--header-timeout",
        click.FloatRange(min=0.0, min_open=True),
        "Seconds a client may take to send its request headers (408, then closed).",
    ),
    (
        "--keep-alive-timeout",
        click.FloatRange(min=0.0, min_open=True),
        "Seconds an idle keep-alive connection stays open.",
    ),
)


def connection_options(envvar: Callable[[str], str] | None = None) -> Callable[[_F], _F]:
    """The connection-limit options (``envvar(name)``: their environment variables)."""

    def decorate(function: _F) -> _F:
        for flag, kind, text in reversed(_LIMIT_OPTIONS):
            name = flag.removeprefix("--").replace("-", "_")
            extra: dict[str, Any] = {} if envvar is None else {"envvar": envvar(name)}
            function = click.option(
                flag,
                default=getattr(_LIMITS, name),
                type=kind,
                help=text,
                show_default=True,
                **extra,
            )(function)
        return function

    return decorate


def connection_limits(options: dict[str, Any], retry_after: int = 1) -> ConnectionLimits:
    """Pop the connection-limit options out of ``options`` into a ConnectionLimits."""
    names = [flag.removeprefix("--").replace("-", "_") for flag, _, _ in _LIMIT_OPTIONS]
    return ConnectionLimits(**{n: options.pop(n) for n in names}, retry_after=retry_after)


def configure_logging(log_level: str) -> None:
    """Log records at ``log_level`` and above to stderr, with time, level and logger."""
    logging.basicConfig(level=log_level.upper(), format=_LOG_FORMAT, stream=sys.stderr)


def cannot_listen(host: str, port: int, exc: OSError) -> click.ClickException:
    """The error a command exits with when ``host:port`` cannot be bound."""
    return click.ClickException(
        f"cannot listen on {host}:{port}: {exc} (stop the other process, or choose another "
        "--port; 0 picks a free one)"
    )


def check_port_free(host: str, port: int) -> None:
    """Fail before creating anything (a spool file) when ``host:port`` is taken."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise cannot_listen(host, port, exc) from None


def serve(server: AppServer, name: str) -> object:
    """Serve until SIGINT/SIGTERM, printing the "listening on" line once listening.

    This is the command's own process: once listening, the objects built so far are
    moved out of the garbage collector's generations (``gc.freeze``)."""

    def announce() -> None:
        # What startup built (modules, the app, uvicorn) lives as long as the process:
        # out of the collector's sight, a full collection walks only what serving
        # allocated since (a 10-12 ms pause every ~15 s under load, before).
        gc.freeze()
        sys.stdout.write(f"{listening_prefix(name)}{server.url}\n")
        sys.stdout.flush()

    return server.run(on_started=announce)
