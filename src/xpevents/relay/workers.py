"""Several ingest worker processes on one port and one spool: ``xpevents relay --workers N``.

One Python process cannot take the relay's target ingest rate (issue 16: uvicorn
with an empty application tops out near 7k requests/s on the reference box), so with
``--workers N`` (N > 1) the ``xpevents relay`` process becomes a supervisor:

* **Sockets**: it binds the port (``--port 0``: a free one, then the same for all) once
  per worker with ``SO_REUSEPORT``, and hands each worker its socket (an inherited
  file descriptor); the kernel spreads new connections over the workers' sockets.
* **Ingest workers** (``python -m xpevents.relay.worker``, settings as one JSON line
  on stdin, nothing secret on a command line) each serve the whole relay application
  on their socket (ingest, ``/healthz``, ``/readyz``, ``/metrics``, datafiles) and
  write to the same spool (SQLite: WAL, one ``BEGIN IMMEDIATE`` transaction per
  group commit; several processes serialize on the file's write lock within
  ``busy_timeout``; Redis: the same stream). They print ``ready`` once listening.
* **Forwarding**: exactly one forwarding child
  (:class:`~xpevents.relay.supervisor.ForwarderProcess`, as ``--forwarder process``),
  run by the supervisor; the workers wake it through a pipe after spooling
  (:class:`~xpevents.relay.remote.RemoteForwarder`).
* **Metrics**: the relay's own counters (requests, received, spooled, refused,
  rejected) are kept by ``prometheus_client``'s multiprocess mode in a directory
  of the supervisor's (``PROMETHEUS_MULTIPROC_DIR`` for the workers), so whichever
  worker answers a scrape serves the sum over all workers, past ones included (a
  restarted worker does not reset them); forwarding counters, spool gauges and the
  upstream latency histogram come from the forwarder's reports, via the state file
  the supervisor rewrites every 0.1 s. ``/readyz`` lists the workers.
* **Supervision**: a worker that exits is restarted with backoff (0.5 s doubling to
  10 s) on a new socket bound to the same port, with an ERROR log line naming it and
  its exit code; until then the others take the connections. A worker that exits
  before it was ever ready stops the relay with exit code 1 (a configuration or
  spool problem every worker would have). Workers run in sessions of their own and
  stop when the supervisor dies.
* **Stop**: SIGTERM or SIGINT to the supervisor: SIGTERM to every worker (each stops
  accepting, finishes its requests, commits), then the forwarder forwards what is due
  until ``--shutdown-timeout`` seconds after the signal, the rest stays in the spool.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Final

from xpevents.relay.supervisor import REPORT_EVERY, ForwarderProcess, child_config
from xpevents.serving.guard import ConnectionLimits
from xpevents.serving.process import listening_prefix

__all__ = ["WorkerPool", "bind_reuseport", "serve_workers"]

logger = logging.getLogger("xpevents.relay")

_BACKOFF: Final = (0.5, 10.0)
_STATE: Final = "forwarder.json"


def bind_reuseport(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (``port=0``: a free one)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.process: subprocess.Popen[bytes] | None = None
        self.ready = threading.Event()
        self.restarts = 0
        self.last_exit: int | None = None
        self.last_exit_at: float | None = None
        self.thread: threading.Thread | None = None

    def as_dict(self) -> dict[str, Any]:
        process = self.process
        running = process is not None and process.poll() is None and self.ready.is_set()
        return {
            "index": self.index,
            "pid": process.pid if running and process is not None else None,
            "running": running,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "last_exit_at": self.last_exit_at,
        }


class WorkerPool:
    """``n`` supervised ingest workers on ``host:port`` (module docstring).

    Args:
        config: the JSON-ready worker config (``child_config`` plus ``limits``).
        state_dir: the supervisor's directory (state file, metrics).
        wake_fd: the write end of the wake-up pipe, inherited by every worker.
    """

    def __init__(
        self,
        n: int,
        host: str,
        port: int,
        config: dict[str, Any],
        state_dir: Path,
        wake_fd: int,
    ) -> None:
        self.host = host
        first = bind_reuseport(host, port)  # the port, known before any worker runs
        self._first: socket.socket | None = first
        self.port: int = first.getsockname()[1]
        self._config = config
        self._dir = state_dir
        self._wake_fd = wake_fd
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.failed = threading.Event()
        """Set when a worker exited before it was ever ready: the relay must stop."""
        self.workers = [_Worker(i) for i in range(n)]
        metrics = state_dir / "metrics"
        metrics.mkdir()
        self._env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}

    def start(self, timeout: float = 30.0) -> bool:
        """Start every worker; ``True`` once all are ready, ``False`` when one failed."""
        for worker in self.workers:
            worker.thread = threading.Thread(
                target=self._supervise,
                args=(worker,),
                name=f"xpevents-relay-worker-{worker.index}",
                daemon=True,
            )
            worker.thread.start()
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            while not worker.ready.wait(0.05):
                if self.failed.is_set() or time.monotonic() > deadline:
                    return False
        return not self.failed.is_set()

    def as_dict(self) -> list[dict[str, Any]]:
        return [worker.as_dict() for worker in self.workers]

    def _socket(self) -> socket.socket:
        with self._lock:
            first, self._first = self._first, None
        return first if first is not None else bind_reuseport(self.host, self.port)

    def _supervise(self, worker: _Worker) -> None:
        delay = _BACKOFF[0]
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self._run(worker)
            except OSError as exc:
                logger.error("cannot start ingest worker %d: %s", worker.index, exc)
            if self._stopping.is_set():
                return
            if not worker.restarts and not worker.ready.is_set():
                logger.error(
                    "ingest worker %d exited (code %s) before it was ready: stopping the relay",
                    worker.index,
                    worker.last_exit,
                )
                self.failed.set()
                return
            if time.monotonic() - started > 60:
                delay = _BACKOFF[0]
            worker.restarts += 1
            worker.ready.clear()
            logger.error(
                "ingest worker %d exited (code %s); restarting it in %.1f s",
                worker.index,
                worker.last_exit,
                delay,
            )
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, _BACKOFF[1])

    def _run(self, worker: _Worker) -> None:
        sock = self._socket()
        config = {
            **self._config,
            "fd": sock.fileno(),
            "wake_fd": self._wake_fd,
            "index": worker.index,
            "state": str(self._dir / _STATE),
            "parent": os.getpid(),
        }
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "xpevents.relay.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                pass_fds=(sock.fileno(), self._wake_fd),
                env=self._env,
                start_new_session=True,
            )
        finally:
            sock.close()  # the worker has its own copy: a dead worker's socket closes
        worker.process = process
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(json.dumps(config).encode() + b"\n")
            process.stdin.close()
        except OSError:
            pass
        for line in process.stdout:
            if line.strip() == b"ready":
                worker.ready.set()
                logger.info("ingest worker %d (pid %d) ready", worker.index, process.pid)
        worker.last_exit = process.wait()
        worker.last_exit_at = time.time()
        process.stdout.close()

    def stop(self, timeout: float) -> None:
        """SIGTERM every worker and wait up to ``timeout`` s (then SIGKILL)."""
        self._stopping.set()
        processes = [w.process for w in self.workers if w.process is not None]
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error("ingest worker pid %d did not stop in time: killed", process.pid)
                process.kill()
                process.wait(10.0)
        for worker in self.workers:
            if worker.thread is not None:
                worker.thread.join(5.0)
        with self._lock:
            if self._first is not None:
                self._first.close()
                self._first = None


def serve_workers(
    n: int,
    *,
    host: str,
    port: int,
    spool: str,
    settings: Any,
    limits: ConnectionLimits,
    max_event_age: float,
    log_level: str,
) -> int:
    """Run the supervisor of ``n`` ingest workers until SIGTERM/SIGINT; the exit code."""
    stop = threading.Event()
    signals: list[int] = []

    def on_signal(sig: int, frame: object) -> None:
        signals.append(sig)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    state_dir = Path(tempfile.mkdtemp(prefix="xpevents-relay-"))
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    config = child_config(spool, settings, max_event_age, log_level)
    config["limits"] = dataclasses.asdict(limits)
    config["host"] = host
    forwarder = ForwarderProcess(child_config(spool, settings, max_event_age, log_level))
    pool: WorkerPool | None = None
    try:
        pool = WorkerPool(n, host, port, config, state_dir, wake_w)
        _write_state(state_dir, forwarder, pool)
        threading.Thread(target=_relay_wakes, args=(wake_r, forwarder), daemon=True).start()
        threading.Thread(
            target=_keep_state, args=(state_dir, forwarder, pool, stop), daemon=True
        ).start()
        if not pool.start():
            stop.set()
            logger.error("relay not started: an ingest worker failed (see above)")
            return 1
        _write_state(state_dir, forwarder, pool)  # every worker shown running from now on
        host_shown = f"[{host}]" if ":" in host else host
        sys.stdout.write(f"{listening_prefix('relay')}http://{host_shown}:{pool.port}\n")
        sys.stdout.flush()
        while not stop.wait(0.2):
            if pool.failed.is_set():
                logger.error("relay stopping: an ingest worker failed (see above)")
                return 1
        logger.info(
            "signal %s: draining %d ingest workers, then flushing the spool",
            signals[0] if signals else "?",
            n,
        )
        return 0
    finally:
        stop.set()
        _shut_down(pool, forwarder, settings.shutdown_timeout)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(wake_w)
        shutil.rmtree(state_dir, ignore_errors=True)


def _shut_down(pool: WorkerPool | None, forwarder: ForwarderProcess, timeout: float) -> None:
    """Drain the workers (each up to ``timeout``), then let the forwarder forward."""
    started = time.monotonic()
    if pool is not None:
        pool.stop(timeout + 10.0)  # each worker drains its requests for up to timeout
    left = max(0.0, timeout - (time.monotonic() - started))
    outcome = forwarder.stop(left)
    if outcome.pending:
        logger.warning(
            "relay stopped: %d delivered during shutdown, %d visitor(s) kept in the spool",
            outcome.delivered,
            outcome.pending,
        )
    else:
        logger.info("relay stopped: %d delivered during shutdown", outcome.delivered)


def _relay_wakes(fd: int, forwarder: ForwarderProcess) -> None:
    """Wake the forwarder for every burst of wake-up bytes the workers write."""
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            return
        if not data:
            return
        forwarder.notify()


def _keep_state(
    state_dir: Path, forwarder: ForwarderProcess, pool: WorkerPool, stop: threading.Event
) -> None:
    while not stop.wait(REPORT_EVERY):
        _write_state(state_dir, forwarder, pool)


def _write_state(state_dir: Path, forwarder: ForwarderProcess, pool: WorkerPool) -> None:
    state = {
        "at": time.time(),
        "report": forwarder.report(),
        "forwarder": forwarder.as_dict(),
        "problem": forwarder.problem(),
        "workers": pool.as_dict(),
    }
    path = state_dir / _STATE
    temporary = path.with_suffix(".tmp")
    try:
        temporary.write_text(json.dumps(state, default=str))
        os.replace(temporary, path)
    except OSError as exc:  # pragma: no cover - a full /tmp
        logger.warning("cannot write the relay state file %s: %s", path, exc)


# -- the worker -------------------------------------------------------------------------
