"""Run an example app from examples/ as a real process on 127.0.0.1, and talk to it.

``served(command, port, ...)`` starts the process (environment: ``XPEVENTS_ENDPOINT`` set
to the collector, ``PYTHONPATH`` to the example's folder), waits until it answers HTTP,
yields it, then stops it with a signal and returns what it wrote to stderr.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def example_env(folder: Path, endpoint: str, **extra: str) -> dict[str, str]:
    """The environment an example runs in: the collector as the endpoint, no proxies."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    path = [str(folder), env.get("PYTHONPATH", "")]
    return {**env, "XPEVENTS_ENDPOINT": endpoint, "PYTHONPATH": os.pathsep.join(path), **extra}


@dataclass
class Served:
    process: subprocess.Popen[str]
    base_url: str
    stderr: str = ""
    pids: set[str] = field(default_factory=set)


def wait_serving(base_url: str, process: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base_url, trust_env=False, timeout=5) as http:
        while True:
            assert process.poll() is None, f"the app exited: {process.communicate()[1]}"
            try:
                http.get("/health")
                return
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the app did not start"
                time.sleep(0.1)


@contextmanager
def served(
    command: list[str],
    port: int,
    *,
    cwd: Path,
    env: dict[str, str],
    stop: signal.Signals = signal.SIGTERM,
) -> Iterator[Served]:
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    handle = Served(process, f"http://127.0.0.1:{port}")
    try:
        wait_serving(handle.base_url, process)
        yield handle
        process.send_signal(stop)
        handle.stderr = process.communicate(timeout=60)[1]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)


def hit(base_url: str, path: str, users: list[str], header: str = "x-user-id") -> list[str]:
    """GET ``path`` once per user (the user id in ``header``); return the bodies."""
    with httpx.Client(base_url=base_url, trust_env=False, timeout=10) as http:
        bodies = []
        for user in users:
            response = http.get(path, headers={header: user})
            assert response.status_code == 200, response.text
            bodies.append(response.text)
        return bodies


def spread(base_url: str, path: str, workers: int, at_least: int, at_most: int) -> dict[str, int]:
    """GET ``path?user=u<i>`` on a new connection each time, until ``workers`` pids answered
    (and ``at_least`` requests were made); return requests per answering pid."""
    pids: dict[str, int] = {}
    for i in range(at_most):
        response = httpx.get(f"{base_url}{path}", params={"user": f"u{i}"}, trust_env=False)
        assert response.status_code == 200, response.text
        pid = str(response.json()["pid"])
        pids[pid] = pids.get(pid, 0) + 1
        if len(pids) >= workers and i + 1 >= at_least:
            break
    return pids
