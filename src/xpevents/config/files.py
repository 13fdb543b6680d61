"""A datafile on disk, watched: for apps that deploy the datafile with their code.

The file is checked every ``interval`` seconds (its size, modification time and inode:
an editor's or a deploy's rename-into-place is seen); a changed file is read, validated
and swapped in like a fetched one, and a bad one never replaces a good one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from xpevents._internal import forking
from xpevents._internal.closing import Closing
from xpevents._internal.validate import positive_seconds
from xpevents.config.base import ConfigHolder, ConfigListener, ConfigStats
from xpevents.config.fetch import DatafileSource, Fetched, Result
from xpevents.decide.datafile import ProjectConfig
from xpevents.errors import ConfigError

__all__ = ["FileConfigManager"]

logger = logging.getLogger("xpevents.config")

_Signature = tuple[int, int, int]


class FileConfigManager(Closing):
    """Decide with the datafile at ``path``; pick up every valid change.

    Args:
        path: the datafile.
        interval: seconds between checks. Default 1.
        start: start watching now (default); ``False``: at the first :meth:`get_config`.

    Raises:
        ConfigError: ``path`` is not a file path or ``interval`` is invalid.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, interval: float = 1.0, start: bool = True
    ) -> None:
        owner = type(self).__name__
        if not isinstance(path, str | os.PathLike):
            raise ConfigError(f"{owner}(path={path!r}): expected a file path")
        self.path = Path(os.fspath(path))
        self.interval = positive_seconds("interval", interval, owner=owner)
        self._source = DatafileSource(self.path.as_uri() if self.path.is_absolute() else str(path))
        self._holder = ConfigHolder(str(self.path))
        self._signature: _Signature | None = None
        self.check()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        forking.track(self, forking.Stage.CONFIG)
        if start:
            self.start()

    def start(self) -> None:
        """Start watching (idempotent; in a forked child, its own thread)."""
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(
                target=self._run, name="xpevents-datafile-watcher", daemon=True
            )
            self._thread.start()

    def get_config(self) -> ProjectConfig | None:
        """The current config (``None`` while the file has never held a valid datafile)."""
        if self._thread is None:
            self.start()
        return self._holder.config

    def config_now(self) -> ProjectConfig | None:
        """The current config, without waiting or starting anything."""
        return self._holder.config

    def datafile_of(self, config: ProjectConfig) -> bytes | None:
        """The JSON text of ``config`` while it is the current one."""
        return self._holder.datafile_of(config)

    def add_listener(self, listener: ConfigListener) -> None:
        """Call ``listener(config)`` after every swap (in the watcher thread)."""
        self._holder.add_listener(listener)

    def stats(self) -> ConfigStats:
        """Revision, reads, changes, failures by reason."""
        return self._holder.stats()

    def check(self) -> Fetched | None:
        """Look at the file now; read it if it changed (``None``: unchanged)."""
        try:
            info = os.stat(self.path)
        except OSError as exc:
            fetched = Fetched(Result.FAILED, reason="unreadable", detail=str(exc))
            self._holder.failed(fetched.reason, fetched.detail)
            return fetched
        signature = (info.st_size, info.st_mtime_ns, info.st_ino)
        if signature == self._signature:
            return None
        now = time.time()
        self._holder.fetched(now)
        try:
            body = self.path.read_bytes()
        except OSError as exc:
            fetched = Fetched(Result.FAILED, reason="unreadable", detail=str(exc))
        else:
            fetched = self._source.accept(body)
            self._signature = signature
        self._holder.apply(fetched, now)
        return fetched

    def close(self) -> None:
        """Stop watching. Idempotent."""
        self._closed = True
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)
        forking.untrack(self)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.check()
            except Exception:  # a bug must not end watching
                logger.exception("checking datafile %s failed unexpectedly", self.path)

    def _reset_after_fork(self) -> None:
        self._stopping = threading.Event()
        self._thread = None

    def __repr__(self) -> str:
        return f"FileConfigManager({str(self.path)!r}, interval={self.interval})"
