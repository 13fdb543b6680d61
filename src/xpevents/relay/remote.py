"""An ingest worker's view of the one forwarder its supervisor runs (``--workers N``).

With several ingest workers (:mod:`xpevents.relay.workers`) the supervisor process runs
the single forwarding child (:class:`~xpevents.relay.supervisor.ForwarderProcess`) and
writes what the workers need to serve ``/readyz`` and ``/metrics`` into a state file
(JSON, replaced atomically every :data:`~xpevents.relay.supervisor.REPORT_EVERY`
seconds): the forwarder's last report, its status and the workers' status. A worker
reads it at each scrape through :class:`RemoteForwarder`, which the
:class:`~xpevents.relay.app.Relay` uses in place of a ``ForwarderProcess`` of its own,
and wakes the forwarder after spooling by writing a byte on a pipe the supervisor
reads.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import msgspec

from xpevents.relay.supervisor import STALE_AFTER
from xpevents.stats import DispatchOutcome, DispatchStats

__all__ = ["RemoteForwarder"]


class RemoteForwarder:
    """The supervisor's forwarder, seen from ingest worker ``index`` (module docstring).

    Args:
        state: the supervisor's state file.
        wake_fd: the write end of the supervisor's wake-up pipe (non-blocking).
        index: this worker's number (0-based), shown on ``/readyz``.
    """

    def __init__(self, state: Path, wake_fd: int, index: int) -> None:
        self._path = state
        self._wake_fd = wake_fd
        self.index = index

    def _state(self) -> dict[str, Any]:
        try:
            data = json.loads(self._path.read_bytes())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def pid(self) -> int | None:
        pid = self._state().get("forwarder", {}).get("pid")
        return pid if isinstance(pid, int) else None

    def stats(self) -> DispatchStats:
        data = self._state().get("report", {}).get("stats")
        return DispatchStats() if data is None else msgspec.convert(data, DispatchStats)

    def upstream(self) -> dict[str, Any]:
        return dict(self._state().get("report", {}).get("upstream") or {})

    def latency_samples(self) -> list[Any]:
        """The forwarding child's upstream latency histogram: ``[name, labels, value]``."""
        samples = self._state().get("report", {}).get("latency")
        return samples if isinstance(samples, list) else []

    def problem(self) -> str | None:
        """Why forwarding is not running now (as the supervisor sees it), or ``None``."""
        state = self._state()
        at = state.get("at")
        if not isinstance(at, int | float) or time.time() - at > STALE_AFTER:
            return f"relay supervisor silent for more than {STALE_AFTER:.0f} s"
        problem = state.get("problem")
        return None if problem is None else str(problem)

    def as_dict(self) -> dict[str, Any]:
        state = self._state()
        return {
            **state.get("forwarder", {"mode": "process"}),
            "worker": self.index,
            "workers": state.get("workers", []),
        }

    def notify(self) -> None:
        """Wake the forwarder's senders (through the supervisor): visitors were spooled."""
        try:
            os.write(self._wake_fd, b"w")
        except OSError:  # a full pipe (the supervisor is busy) or a gone supervisor
            pass

    def stop(self, timeout: float) -> DispatchOutcome:
        """Nothing to stop: the supervisor forwards, and stops the forwarder last."""
        return DispatchOutcome()
