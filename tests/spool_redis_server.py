"""A throwaway redis-server on an ephemeral port, for outage tests (stop, restart)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """``redis-server --port N --save '' --appendonly no``; ``stop()`` and ``start()``.

    ``password`` sets ``requirepass``; ``directory`` turns persistence on (an
    append-only file fsynced on every write, in that directory), so a restart keeps
    what was written. ``args`` are more server options (``["--databases", "4"]``).
    """

    def __init__(
        self,
        *,
        password: str | None = None,
        directory: str | None = None,
        args: Sequence[str] = (),
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = binary
        self.port = free_port()
        self.password = password
        self.directory = directory
        self.args = list(args)
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if self.directory is None:
            command += ["--appendonly", "no"]
        else:
            command += ["--appendonly", "yes", "--appendfsync", "always", "--dir", self.directory]
        if self.password:
            command += ["--requirepass", self.password]
        command += self.args
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis(port=self.port, password=self.password)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
