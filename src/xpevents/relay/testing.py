"""Run a real ``xpevents relay`` in a subprocess (tests, benchmarks, examples).

::

    with run_relay(spool=f"sqlite:///{tmp}/r.db", upstream=collector.events_url,
                   upstream_eu=collector.eu_events_url) as relay:
        httpx.post(relay.events_url, content=body)

The relay is started as ``python -m xpevents.relay --port 0 ...`` with the current
interpreter; the handle can stop it gracefully (:meth:`RelayHandle.terminate`) or
kill it (:meth:`RelayHandle.kill`), e.g. to test crash safety.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import IO, Any

import httpx

from xpevents.serving.process import service_process

__all__ = ["RelayHandle", "run_relay"]


class RelayHandle:
    """A running relay process.

    Attributes:
        base_url: e.g. ``http://127.0.0.1:PORT`` (use it as a dispatcher ``endpoint``).
        events_url, eu_events_url: the two ingest URLs.
        process: the ``subprocess.Popen``.
    """

    def __init__(self, base_url: str, process: subprocess.Popen[str], stderr: IO[str]) -> None:
        self.base_url = base_url
        self.events_url = f"{base_url}/v1/events"
        self.eu_events_url = f"{base_url}/eu/v1/events"
        self.process = process
        self._stderr = stderr
        self.http = httpx.Client(base_url=base_url, trust_env=False, timeout=30.0)

    @property
    def pid(self) -> int:
        return self.process.pid

    def __repr__(self) -> str:
        return f"RelayHandle(base_url={self.base_url!r}, pid={self.pid})"

    def metrics(self) -> dict[str, float]:
        """``GET /metrics`` as ``{"name{labels}": value}`` (samples only)."""
        text = self.http.get("/metrics").text
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def readyz(self) -> httpx.Response:
        return self.http.get("/readyz")

    def kill(self) -> None:
        """SIGKILL: no shutdown at all (crash test)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for the exit; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stderr_text(self) -> str:
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read()

    def close(self) -> None:
        self.http.close()


def _option_args(options: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for name, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, list | tuple):  # a repeatable option (sdk_key=[...])
            for item in value:
                args += [flag, str(item)]
        else:
            args += [flag] if value is True else [flag, str(value)]
    return args


def _kill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(10)


def _terminate(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextlib.contextmanager
def run_relay(
    *, startup_timeout: float = 15.0, env: dict[str, str] | None = None, **options: Any
) -> Iterator[RelayHandle]:
    """Run ``xpevents relay`` for the duration of the block; stopped with SIGTERM after.

    Keyword arguments are the command's options in snake_case (``spool``,
    ``upstream``, ``upstream_eu``, ``token``, ``max_spool_events``, ``lease``...);
    ``port`` defaults to 0. ``env`` adds environment variables.

    Raises:
        RuntimeError: the relay did not print its "listening on" line in time (the
            message carries its stderr).
    """
    options = {"port": 0, **options}
    command = [sys.executable, "-m", "xpevents.relay", *_option_args(options)]
    with service_process(
        "relay",
        command,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        startup_timeout=startup_timeout,
        abandon=_kill,
        stop=_terminate,
    ) as (process, base_url, stderr):
        handle = RelayHandle(base_url, process, stderr)
        try:
            yield handle
        finally:
            handle.close()
