"""Test helpers: run a real collector in a subprocess, and pytest fixtures for it.

Installed with xpevents as a pytest plugin (entry point ``pytest11``), so any test
suite can ask for::

    def test_delivery(collector):
        client = make_client(endpoint=collector.events_url)
        ...
        stats = collector.wait_for(unique_events=10, timeout=5)
        assert stats["duplicates"] == 0

    def test_retries(collector_factory):
        flaky = collector_factory(fail_rate=0.5, seed=1)
        ...

For unit tests that need no server at all, :class:`RecordingDispatcher` records what
would have been sent (``recorder.assert_impression(experiment_key=...)``).

Outside pytest, :func:`run_collector` is a plain context manager::

    with run_collector(latency_ms=50) as c:
        ...

The collector is started as ``python -m xpevents collector --port 0 ...`` with the
current interpreter; its own HTTP calls use httpx with ``trust_env=False`` so proxy
variables never reroute them. Importing this module is cheap (stdlib and httpx).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any, Final

import httpx

from xpevents.recording import RecordedConversion, RecordedImpression, RecordingDispatcher
from xpevents.serving.process import service_process

__all__ = [
    "CollectorHandle",
    "RecordedConversion",
    "RecordedImpression",
    "RecordingDispatcher",
    "run_collector",
]

logger = logging.getLogger("xpevents.testing")

STARTUP_TIMEOUT: Final = 15.0
"""Seconds to wait for the collector's "listening on" line."""


class CollectorHandle:
    """A running collector (see :func:`run_collector`).

    Attributes:
        base_url: e.g. ``http://127.0.0.1:PORT``.
        events_url: ``base_url + "/v1/events"``.
        eu_events_url: ``base_url + "/eu/v1/events"``.
        pid: the collector process id.
    """

    def __init__(self, base_url: str, pid: int) -> None:
        self.base_url = base_url
        self.events_url = f"{base_url}/v1/events"
        self.eu_events_url = f"{base_url}/eu/v1/events"
        self.pid = pid
        self._http = httpx.Client(base_url=base_url, trust_env=False, timeout=10.0)

    def __repr__(self) -> str:
        return f"CollectorHandle(base_url={self.base_url!r}, pid={self.pid})"

    def stats(self) -> dict[str, Any]:
        """``GET /stats``: the collector's counters."""
        return self._get_json("/stats")  # type: ignore[no-any-return]

    def control(self, **settings: Any) -> dict[str, Any]:
        """``POST /control`` with the given fault settings; return the settings in force.

        Names are the CLI options in snake_case: ``latency_ms``, ``fail_rate``,
        ``rate_429``, ``retry_after``, ``drop_rate``, ``html_rate``, ``seed``. With no
        argument, only read them.
        """
        if not settings:
            return self._get_json("/control")  # type: ignore[no-any-return]
        response = self._http.post("/control", json=settings)
        if response.status_code == 400:
            raise ValueError(f"collector rejected control settings: {response.text}")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def reset(self) -> None:
        """``POST /reset``: forget stored events and zero the stats."""
        self._http.post("/reset").raise_for_status()

    def events(self, limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
        """``GET /events``: stored events in arrival order (one dict per event)."""
        response = self._http.get("/events", params={"limit": limit, "offset": offset})
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def wait_for(
        self, *, unique_events: int, timeout: float = 10.0, interval: float = 0.02
    ) -> dict[str, Any]:
        """Poll ``/stats`` until at least ``unique_events`` events are stored.

        Returns the stats that satisfied the condition; raises :class:`TimeoutError`
        carrying the last stats seen when ``timeout`` seconds pass first.
        """
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["unique_events"] >= unique_events:
                return stats
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"collector stored {stats['unique_events']} unique events, not "
                    f"{unique_events}, within {timeout}s; last stats: {stats}"
                )
            time.sleep(interval)

    def close(self) -> None:
        """Close the handle's HTTP client (the process is stopped by the context manager)."""
        self._http.close()

    def _get_json(self, path: str) -> Any:
        response = self._http.get(path)
        response.raise_for_status()
        return response.json()


def _option_args(options: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for name, value in options.items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            args.append(flag)
        else:
            args += [flag, str(value)]
    return args


def _stop(process: subprocess.Popen[str], grace: float = 5.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            logger.warning("collector pid %d ignored SIGTERM; killing it", process.pid)
            process.kill()
            process.wait(grace)


@contextlib.contextmanager
def run_collector(**options: Any) -> Iterator[CollectorHandle]:
    """Run ``xpevents collector`` in a subprocess for the duration of the block.

    Keyword arguments are the command's options in snake_case (``db``, ``max_body``,
    ``latency_ms``, ``fail_rate``, ``rate_429``, ``retry_after``, ``drop_rate``, ``html_rate``,
    ``seed``, ``host``, ``log_level``); ``port`` defaults to 0 (a free port).

    Raises:
        RuntimeError: the collector did not print its "listening on" line within
            15 seconds (the message includes what it wrote to stderr).
    """
    options = {"port": 0, **options}
    startup_timeout = float(options.pop("startup_timeout", STARTUP_TIMEOUT))
    command = [sys.executable, "-m", "xpevents", "collector", *_option_args(options)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with service_process(
        "collector",
        command,
        env=env,
        startup_timeout=startup_timeout,
        abandon=_stop,
        stop=_stop,
    ) as (process, base_url, _):
        handle = CollectorHandle(base_url, process.pid)
        logger.debug("collector pid %d at %s", process.pid, handle.base_url)
        try:
            yield handle
        finally:
            handle.close()
