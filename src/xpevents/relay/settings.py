"""What the relay can be told: :class:`RelaySettings` (the CLI options, docs/relay.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from xpevents.relay.datafiles import DatafileCacheSettings
from xpevents.send.retry import RetryPolicy

__all__ = ["DEFAULT_UPSTREAM", "DEFAULT_UPSTREAM_EU", "RelaySettings"]

DEFAULT_UPSTREAM: Final = "https://logx.optimizely.com/v1/events"
DEFAULT_UPSTREAM_EU: Final = "https://eu.logx.optimizely.com/v1/events"


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """Everything the relay can be told (the CLI options; see ``docs/relay.md``)."""

    upstream: str = DEFAULT_UPSTREAM
    upstream_eu: str = DEFAULT_UPSTREAM_EU
    token: str | None = field(default=None, repr=False)
    max_body: int = 3_500_000
    read_timeout: float = 10.0
    max_spool_events: int = 1_000_000
    max_spool_bytes: int = 512 << 20
    retry_after: int = 1
    batch_size: int = 100
    flush_interval: float = 1.0
    max_batch_bytes: int = 1_048_576
    concurrency: int = 4
    timeout: float = 10.0
    gzip: bool = False
    lease: float = 30.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_age: float = 86_400.0
    proxy: str | None = field(default=None, repr=False)
    shutdown_timeout: float = 10.0
    sdk_keys: tuple[str, ...] = ()
    datafile_upstream: str | None = None
    datafile_interval: float = 60.0
    datafile_cache_dir: str | None = None
    forwarder: str = "auto"
    """``thread``, ``process`` or ``auto`` (a child process for a durable spool)."""

    def datafile_settings(self) -> DatafileCacheSettings:
        """The datafile cache's settings (``relay/datafiles.py``)."""
        return DatafileCacheSettings(
            sdk_keys=tuple(self.sdk_keys),
            upstream=self.datafile_upstream,
            update_interval=self.datafile_interval,
            timeout=self.timeout,
            cache_dir=None if self.datafile_cache_dir is None else Path(self.datafile_cache_dir),
            proxy=self.proxy,
        )

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=None,
            backoff_base=self.backoff_base,
            backoff_max=self.backoff_max,
            max_retry_after=300.0,
            max_retry_age=self.max_retry_age,
        )
