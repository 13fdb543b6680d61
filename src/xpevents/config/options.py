"""The polling managers' options, checked once, and the config they start with.

Both :class:`~xpevents.config.polling.PollingConfigManager` (a thread) and
:class:`~xpevents.config.aio.AsyncPollingConfigManager` (an asyncio task) take the
official SDK's names (``sdk_key``, ``datafile``, ``update_interval``,
``blocking_timeout``, ``url``, ``url_template``, ``datafile_access_token``) plus
xpevents' own (``datafile_cache``, ``timeout``, ``backoff_base``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec

from xpevents._internal.validate import positive_seconds
from xpevents.config.disk import read_cache
from xpevents.config.fetch import DatafileSource, Result, datafile_url
from xpevents.decide.datafile import ProjectConfig
from xpevents.errors import ConfigError

__all__ = ["DEFAULT_BLOCKING_TIMEOUT", "DEFAULT_UPDATE_INTERVAL", "PollingOptions"]

logger = logging.getLogger("xpevents.config")

DEFAULT_UPDATE_INTERVAL: Final = 300.0
"""Seconds between polls (the official SDK's 5 minutes)."""
DEFAULT_BLOCKING_TIMEOUT: Final = 10.0
"""Seconds ``get_config()`` waits for the first fetch (the official SDK's 10)."""
_CDN_HOSTS: Final = ("cdn.optimizely.com", "config.optimizely.com")


@dataclass(frozen=True, slots=True, kw_only=True)
class PollingOptions:
    """Every option of a polling config manager (see its class for their meaning)."""

    owner: str
    sdk_key: str | None = None
    datafile: Any = None
    update_interval: float = DEFAULT_UPDATE_INTERVAL
    blocking_timeout: float = DEFAULT_BLOCKING_TIMEOUT
    url: str | None = None
    url_template: str | None = None
    datafile_access_token: str | None = field(default=None, repr=False)
    datafile_cache: str | os.PathLike[str] | None = None
    timeout: float = 10.0
    backoff_base: float = 1.0

    def __post_init__(self) -> None:
        owner = self.owner
        positive_seconds("update_interval", self.update_interval, owner=owner)
        positive_seconds("blocking_timeout", self.blocking_timeout, owner=owner, allow_zero=True)
        positive_seconds("timeout", self.timeout, owner=owner)
        positive_seconds("backoff_base", self.backoff_base, owner=owner)
        token = self.datafile_access_token
        if token is not None and (not isinstance(token, str) or not token.strip()):
            raise ConfigError(
                f"{owner}(datafile_access_token=...): expected the token as a non-empty str"
            )
        cache = self.datafile_cache
        if cache is not None and not isinstance(cache, str | os.PathLike):
            raise ConfigError(f"{owner}(datafile_cache={cache!r}): expected a file path")
        self.url_to_poll()  # checks sdk_key / url / url_template
        if self.update_interval < 30 and urlsplit(self.url_to_poll()).hostname in _CDN_HOSTS:
            logger.warning(
                "%s: polling Optimizely's CDN every %g s; intervals below 30 s are not recommended",
                owner,
                self.update_interval,
            )

    def url_to_poll(self) -> str:
        """The datafile URL (``url``, or the template filled with the SDK key)."""
        return datafile_url(
            self.sdk_key,
            url=self.url,
            url_template=self.url_template,
            authenticated=self.datafile_access_token is not None,
            owner=self.owner,
        )

    def cache_path(self) -> Path | None:
        """``datafile_cache`` as a path."""
        return None if self.datafile_cache is None else Path(os.fspath(self.datafile_cache))

    def source(self) -> DatafileSource:
        """A fresh conditional-request state for the URL."""
        return DatafileSource(self.url_to_poll(), access_token=self.datafile_access_token)

    def initial_config(self, source: DatafileSource) -> tuple[ProjectConfig | None, bytes | None]:
        """The config to decide with before the first fetch, and its text: the newest valid
        one of the ``datafile`` given and the cached one (a bad one is logged and ignored)."""
        best: tuple[ProjectConfig | None, bytes | None] = (None, None)
        candidates: list[tuple[str, Any]] = []
        cache = self.cache_path()
        if cache is not None:
            cached = read_cache(cache)
            if cached is not None:
                candidates.append((f"datafile cache {cache}", cached))
        if self.datafile is not None:
            candidates.append(("the datafile given", self.datafile))
        for label, datafile in candidates:
            body = datafile if isinstance(datafile, bytes | str) else _json(datafile)
            fetched = source.accept(body.encode() if isinstance(body, str) else body)
            if fetched.result is Result.CHANGED:
                best = (fetched.config, fetched.datafile)
            elif fetched.result is Result.REFUSED and fetched.reason != "older_revision":
                logger.warning("%s: %s ignored: %s", self.owner, label, fetched.detail)
        return best


def _json(datafile: Any) -> bytes:
    try:
        return msgspec.json.encode(datafile)
    except (TypeError, msgspec.EncodeError) as exc:
        raise ConfigError(f"datafile={type(datafile).__name__}: not JSON data ({exc})") from None
