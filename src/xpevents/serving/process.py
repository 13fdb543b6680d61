"""A service in a subprocess: the line it prints once listening, and its launcher.

``xpevents relay`` and ``xpevents collector`` print one line on stdout when they
listen, ``xpevents NAME listening on URL``; :func:`service_process` starts one with
the current interpreter and waits for that line, so tests, benchmarks and examples get
the real URL of a service bound to port 0. Standard library only: importing it is cheap.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO

__all__ = ["listening_prefix", "service_process"]


def listening_prefix(name: str) -> str:
    """The start of the line service ``name`` prints once it listens (the URL follows)."""
    return f"xpevents {name} listening on "


def _first_line(stream: IO[str], timeout: float, name: str) -> str | None:
    """The first line of ``stream``, or ``None`` after ``timeout`` seconds / at EOF."""
    result: list[str] = []
    thread = threading.Thread(
        target=lambda: result.append(stream.readline()),
        name=f"xpevents-{name}-startup",
        daemon=True,
    )
    thread.start()
    thread.join(timeout)
    return result[0] if result and result[0] else None


@contextlib.contextmanager
def service_process(
    name: str,
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    startup_timeout: float,
    abandon: Callable[[subprocess.Popen[str]], object],
    stop: Callable[[subprocess.Popen[str]], object],
) -> Iterator[tuple[subprocess.Popen[str], str, IO[str]]]:
    """Run ``command`` for the block; yield ``(process, base_url, stderr)`` once it listens.

    ``stderr`` is a temporary file holding what the service wrote there. ``abandon``
    ends a service that did not start in time, ``stop`` the service after the block
    (each is a no-op on a process that has exited).

    Raises:
        RuntimeError: no "listening on" line within ``startup_timeout`` seconds (the
            message carries the command, the exit code and the service's stderr).
    """
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as stderr:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=dict(env),
        )
        try:
            assert process.stdout is not None
            line = _first_line(process.stdout, startup_timeout, name)
            prefix = listening_prefix(name)
            if line is None or not line.startswith(prefix):
                abandon(process)
                stderr.seek(0)
                raise RuntimeError(
                    f"{name} did not start ({' '.join(command)}; exit code "
                    f"{process.returncode}); stdout: {line!r}; stderr:\n{stderr.read()}"
                )
            yield process, line[len(prefix) :].strip(), stderr
        finally:
            stop(process)
            if process.stdout is not None:
                process.stdout.close()
