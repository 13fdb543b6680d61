"""One ingest worker process of ``xpevents relay --workers N`` (``python -m
xpevents.relay.worker``; the supervisor is :mod:`xpevents.relay.workers`).

It reads its settings as one JSON line on stdin, serves the relay application on the
socket it inherited, writes to the shared spool, wakes the forwarding child through a
pipe, sums the relay's own counters over every worker's files for ``/metrics``, prints
``ready`` once listening, and stops on SIGTERM or when its supervisor is gone.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from xpevents.serving.guard import ConnectionLimits

__all__ = ["worker_main"]

logger = logging.getLogger("xpevents.relay")


def _watch_parent(parent: int) -> None:
    """Stop this worker (as SIGTERM does) once its supervisor is gone."""
    while os.getppid() == parent:
        time.sleep(0.5)
    logger.error("relay supervisor %d gone: ingest worker %d stopping", parent, os.getpid())
    os.kill(os.getpid(), signal.SIGTERM)


def _emit(stream: IO[str], line: str) -> None:
    try:
        stream.write(line + "\n")
        stream.flush()
    except OSError:
        pass


def _sum_counters(metrics: Any, directory: str) -> None:
    """Serve the relay's own counters summed over every worker (past ones included).

    Each worker's ``Counter`` values live in ``directory`` (``prometheus_client``
    multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR`` set before the import); the
    registry's collector of the relay's own metrics (``relay/metrics.py``) is replaced
    by one that reads them all, keeping its upstream latency family (the forwarding
    child's). The ``process_*`` and ``python_*`` metrics are the answering worker's.
    """
    from prometheus_client.multiprocess import MultiProcessCollector

    owned = metrics._owned
    summed = MultiProcessCollector(None, path=directory)  # type: ignore[no-untyped-call]
    metrics.registry.unregister(owned)
    metrics.registry.register(_Summed(owned, summed))


class _Summed:
    """The relay's own metrics with the counters summed over the workers' files."""

    def __init__(self, owned: Any, summed: Any) -> None:
        self._owned = owned
        self._summed = summed

    def collect(self) -> Iterator[Any]:
        yield from self._summed.collect()
        for family in self._owned.collect():
            if family.type == "histogram":  # the upstream latency (the forwarder's)
                yield family


def worker_main() -> None:
    """An ingest worker: read the config line, serve until SIGTERM (module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops us
    config = json.loads(sys.stdin.readline())
    from xpevents.relay.app import Relay, RelaySettings
    from xpevents.relay.cli_inputs import open_relay_spool
    from xpevents.relay.remote import RemoteForwarder
    from xpevents.relay.server import RelayServer
    from xpevents.serving.command import configure_logging

    configure_logging(config.get("log_level", "warning"))
    fields = dict(config["settings"])
    fields["sdk_keys"] = tuple(fields.get("sdk_keys", ()))
    settings = RelaySettings(**fields)
    sock = socket.socket(fileno=config["fd"])
    threading.Thread(target=_watch_parent, args=(config["parent"],), daemon=True).start()
    store = open_relay_spool(
        config["spool"],
        max_events=settings.max_spool_events,
        max_bytes=settings.max_spool_bytes,
        max_event_age=config["max_event_age"],
    )
    remote = RemoteForwarder(Path(config["state"]), config["wake_fd"], config["index"])
    relay = Relay(store, settings, forwarder=remote, log_level=config["log_level"])
    if config["spool"].startswith("sqlite:"):
        wait = float(getattr(store, "busy_timeout", 5.0))
        relay.writer.share_commits(Path(config["state"]).with_name("commit.lock"), wait=wait)
    _sum_counters(relay.metrics, os.environ["PROMETHEUS_MULTIPROC_DIR"])
    limits = ConnectionLimits(**config["limits"])
    server = RelayServer(
        relay,
        host=config.get("host", "127.0.0.1"),
        log_level=config["log_level"],
        limits=limits,
        sock=sock,
    )
    server.run(on_started=lambda: _emit(sys.stdout, "ready"))


if __name__ == "__main__":
    worker_main()
