"""Forwarding in a child process of the relay (``--forwarder process``).

With a durable spool (SQLite, Redis) the relay can leave forwarding to a child
process reading the same spool, so that ingest never shares a GIL with the senders
(issue 16: in one process the sender threads took the GIL from the event loop after
each socket call, and the loop waited for it). The child is the relay's own
:class:`~xpevents.relay.forward.Forwarder` (the ``xpevents forward`` pipeline: batches,
retries, dead letters, circuit breaker).

* **Start**: the child gets its settings as one JSON line on its stdin (nothing
  secret on a command line), opens the spool, prints ``ready``, then one JSON report
  line every :data:`REPORT_EVERY` seconds: its ``DispatchStats``, the last upstream
  outcome and its upstream latency histogram's samples. The relay serves
  these on ``/readyz`` and ``/metrics``; its counters restart from 0 with each child.
* **Checkpoints**: with a SQLite spool the child also copies the spool's write-ahead
  log into the database file every few milliseconds, from a thread of its own
  (:class:`~xpevents.spool.sqlite.backfill.WalBackfill`, run by the
  :class:`~xpevents.relay.forward.Forwarder`), so that the ingest commit
  that checkpoints (every ``checkpoint_pages``) finds little left to copy.
* **Wake-ups**: the relay writes ``wake`` on the child's stdin after spooling (at most
  every 20 ms, or once a batch is waiting), so the child sends as soon as a batch is
  due instead of at its next idle poll of the spool (once a second).
* **Supervision**: a child that exits, or stops reporting for
  :data:`STALE_AFTER` seconds (then it is killed), is restarted with backoff (0.5 s
  doubling to 10 s); ``/readyz`` answers 503 while none runs. Visitors the dead child
  had claimed are sent again once their lease expires (``--lease``): nothing is lost.
* **Stop**: after the relay's ingest drain, ``stop SECONDS`` on the child's stdin: it
  forwards what is due for that long, reports what it delivered and what is pending,
  and exits; SIGTERM, then SIGKILL, if it does not. A child whose stdin closes (the
  relay died) stops the same way. It ignores SIGINT (a Ctrl-C reaches the relay, which
  stops the child in turn) and runs in a session of its own.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from typing import IO, Any, Final

import msgspec

from xpevents.errors import ConfigError
from xpevents.spool.base import Spool
from xpevents.stats import DispatchOutcome, DispatchStats

__all__ = [
    "FORWARDER_MODES",
    "REPORT_EVERY",
    "STALE_AFTER",
    "ForwarderProcess",
    "child_config",
    "child_main",
    "forwards_in_child",
]

logger = logging.getLogger("xpevents.relay")

REPORT_EVERY: Final = 0.1
"""Seconds between the child's reports."""
STALE_AFTER: Final = 10.0
"""Seconds without a report after which the child is deemed hung, killed and restarted."""
_BACKOFF: Final = (0.5, 10.0)


FORWARDER_MODES: Final = ("auto", "process", "thread")


def forwards_in_child(mode: str, store: Spool, http_transport: object | None) -> bool:
    """Whether forwarding runs in a child process for ``--forwarder MODE``.

    ``auto``: yes for a durable spool (SQLite, Redis), unless the relay was given an
    HTTP transport of its own (tests: the child could not use it); a memory spool
    cannot be shared with another process.

    Raises:
        ConfigError: an unknown mode, or ``process`` with a memory spool.
    """
    if mode not in FORWARDER_MODES:
        raise ConfigError(f"forwarder={mode!r}: must be one of {', '.join(FORWARDER_MODES)}")
    if mode == "process" and not store.durable:
        raise ConfigError(
            "--forwarder process needs a durable --spool (sqlite:///PATH or redis://HOST), "
            f"not {store.url}: the child process cannot read a memory spool; use "
            "--forwarder thread (or auto), or a durable --spool"
        )
    if mode == "auto":
        return store.durable and http_transport is None
    return mode == "process"


def child_config(
    spool_url: str, settings: Any, max_event_age: float, log_level: str
) -> dict[str, Any]:
    """The JSON-ready config line a forwarding child is started with."""
    return {
        "spool": spool_url,
        "settings": msgspec.to_builtins(replace(settings, token=None)),
        "max_event_age": max_event_age,
        "log_level": log_level,
    }


class ForwarderProcess:
    """A supervised ``python -m xpevents.relay.supervisor`` child (module docstring).

    Args:
        config: what the child needs: ``spool`` (the spool URL as given),
            ``settings`` (``RelaySettings`` fields), ``max_event_age``, ``log_level``.
        startup_timeout: seconds :meth:`start` waits for the first child's ``ready``.
    """

    def __init__(self, config: dict[str, Any], *, startup_timeout: float = 15.0) -> None:
        self._config = json.dumps(config)
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._report: dict[str, Any] = {}
        self._reported_at = 0.0
        self._outcome: DispatchOutcome | None = None
        self.restarts = 0
        self.last_exit: int | None = None
        self.last_exit_at: float | None = None
        self._thread = threading.Thread(
            target=self._supervise, name="xpevents-relay-forwarder", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(startup_timeout):
            logger.error("forwarder process not ready after %.0f s; still trying", startup_timeout)

    # -- what the relay reads ---------------------------------------------------------

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def stats(self) -> DispatchStats:
        """The child's last reported ``DispatchStats`` (zeros before its first report)."""
        data = self._report.get("stats")
        return DispatchStats() if data is None else msgspec.convert(data, DispatchStats)

    def report(self) -> dict[str, Any]:
        """The child's last report as it sent it (``stats``, ``upstream``, ``latency``)."""
        return dict(self._report)

    def upstream(self) -> dict[str, Any]:
        """The last upstream outcome the child reported."""
        return dict(self._report.get("upstream") or {})

    def latency_samples(self) -> list[Any]:
        """The child's upstream latency histogram: ``[name, labels, value]`` samples."""
        samples = self._report.get("latency")
        return samples if isinstance(samples, list) else []

    def problem(self) -> str | None:
        """Why forwarding is not running now, or ``None``."""
        if self.pid is None or not self._ready.is_set():
            return f"forwarder process not running (last exit code {self.last_exit})"
        if time.monotonic() - self._reported_at > STALE_AFTER:
            return f"forwarder process silent for more than {STALE_AFTER:.0f} s"
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": "process",
            "pid": self.pid,
            "running": self.problem() is None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "last_exit_at": self.last_exit_at,
        }

    def notify(self) -> None:
        """Wake the child's senders: visitors were spooled (they poll otherwise)."""
        process = self._process
        if process is None or process.stdin is None or self._stopping.is_set():
            return
        with self._lock:
            try:  # non-blocking and atomic (< PIPE_BUF): never holds up ingest
                os.write(process.stdin.fileno(), b"wake\n")
            except BlockingIOError:  # a hung child's pipe is full: the watchdog kills it
                pass
            except (OSError, ValueError):  # the child is gone: the supervisor restarts it
                pass

    # -- supervision ------------------------------------------------------------------

    def _supervise(self) -> None:
        delay = _BACKOFF[0]
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self._run_child()
            except OSError as exc:
                logger.error("cannot start the forwarder process: %s", exc)
            if self._stopping.is_set():
                return
            if time.monotonic() - started > 60:
                delay = _BACKOFF[0]
            self.restarts += 1
            logger.error(
                "forwarder process exited (code %s); restarting in %.1f s", self.last_exit, delay
            )
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, _BACKOFF[1])

    def _run_child(self) -> None:
        process = subprocess.Popen(
            [sys.executable, "-m", "xpevents.relay.supervisor"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert process.stdin is not None and process.stdout is not None
        with self._lock:  # the config line first: notify() writes only after it
            self._process = process
            try:
                process.stdin.write(self._config + "\n")
                process.stdin.flush()
                os.set_blocking(process.stdin.fileno(), False)
            except OSError:
                pass
        watchdog = threading.Thread(target=self._watch, args=(process,), daemon=True)
        watchdog.start()
        self._read_reports(process.stdout)
        self.last_exit = process.wait()
        self.last_exit_at = time.time()
        self._ready.clear()
        process.stdout.close()
        with self._lock:
            try:
                process.stdin.close()
            except OSError:
                pass

    def _read_reports(self, stdout: IO[str]) -> None:
        for line in stdout:
            if line.strip() == "ready":
                self._reported_at = time.monotonic()
                self._ready.set()
                logger.info("forwarder process %s ready", self.pid)
                continue
            try:
                report = json.loads(line)
            except ValueError:
                continue
            if "outcome" in report:
                self._outcome = DispatchOutcome(**report["outcome"])
            else:
                self._report = report
                self._reported_at = time.monotonic()

    def _watch(self, process: subprocess.Popen[str]) -> None:
        """Kill a child that stopped reporting (hung): the supervisor restarts it."""
        while process.poll() is None and not self._stopping.is_set():
            time.sleep(1.0)
            silent = time.monotonic() - self._reported_at
            if self._ready.is_set() and silent > STALE_AFTER and process.poll() is None:
                logger.error("forwarder process %d silent for %.0f s: killed", process.pid, silent)
                process.kill()

    def stop(self, timeout: float) -> DispatchOutcome:
        """Let the child forward what is due for ``timeout`` seconds, then stop it."""
        self._stopping.set()
        with self._lock:
            process = self._process
            if process is not None and process.poll() is None:
                assert process.stdin is not None
                try:
                    os.write(process.stdin.fileno(), f"stop {timeout}\n".encode())
                except (OSError, ValueError):
                    pass  # a full pipe: the child is hung, terminated below
                try:
                    process.stdin.close()
                except OSError:
                    pass
        if process is not None and process.poll() is None:
            _end(process, timeout + 5.0)
        self._thread.join(timeout + 15.0)
        if process is not None:
            logger.info("forwarder process %d stopped (exit code %s)", process.pid, process.poll())
        return self._outcome or DispatchOutcome(pending=self.stats().spool_depth)


def _end(process: subprocess.Popen[str], grace: float) -> None:
    for step in (process.terminate, process.kill):
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            step()
        grace = 5.0
    process.wait(10.0)


# -- the child --------------------------------------------------------------------------


def _report(forwarder: Any) -> str:
    from xpevents.relay.metrics import latency_samples

    latency = latency_samples(forwarder.metrics.latency)
    stats = msgspec.to_builtins(forwarder.dispatcher.stats(), enc_hook=dict)
    report = {"stats": stats, "upstream": forwarder.metrics.upstream.as_dict()}
    return json.dumps({**report, "latency": latency}, default=dict)


def child_main() -> None:
    """The child: read the config line, forward until told to stop (module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = json.loads(sys.stdin.readline())
    from xpevents.relay.app import RelaySettings
    from xpevents.relay.cli import open_relay_spool
    from xpevents.relay.forward import Forwarder
    from xpevents.relay.pipeline import RELAY_HINT
    from xpevents.serving.command import configure_logging

    configure_logging(config.get("log_level", "warning"))
    fields = dict(config["settings"])
    fields["sdk_keys"] = tuple(fields.get("sdk_keys", ()))
    settings = RelaySettings(**fields)
    store = open_relay_spool(
        config["spool"],
        max_events=settings.max_spool_events,
        max_bytes=settings.max_spool_bytes,
        max_event_age=config["max_event_age"],
    )
    forwarder = Forwarder(store, settings, hint=RELAY_HINT)
    stop = threading.Event()
    timeout = [settings.shutdown_timeout]

    def on_term(sig: int, frame: object) -> None:
        stop.set()

    def read_commands() -> None:
        for line in sys.stdin:
            if line.startswith("wake"):
                forwarder.dispatcher.notify()
            elif line.startswith("stop"):
                timeout[0] = float(line.split()[1])
                break
        stop.set()  # told to stop, or the relay is gone

    signal.signal(signal.SIGTERM, on_term)
    threading.Thread(target=read_commands, daemon=True).start()
    gc.freeze()  # as the relay's own process does once listening (serving.command)
    _emit("ready")
    while not stop.wait(REPORT_EVERY):
        _emit(_report(forwarder))
    _emit(_report(forwarder))
    outcome = forwarder.close(timeout=timeout[0])
    _emit(json.dumps({"outcome": outcome.as_dict()}, default=dict))


def _emit(line: str) -> None:
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except OSError:  # the relay is gone: keep forwarding until told to stop
        pass


if __name__ == "__main__":
    child_main()
