"""Polling a datafile URL from a task on the asyncio event loop (for AsyncDispatcher apps).

The same rules as :class:`~xpevents.config.polling.PollingConfigManager` (conditional
GETs, jitter, backoff, validation before a swap, the disk cache), with an
``httpx.AsyncClient`` and no thread. ``get_config()`` never blocks: it is called from
request handlers on the loop; ``await wait_ready(timeout)`` waits for the first
datafile.

Usage (Starlette/FastAPI lifespan)::

    manager = AsyncPollingConfigManager(sdk_key="...")
    async with manager:              # starts polling on this loop; stops at shutdown
        client = Client(config_manager=manager, event_dispatcher=AsyncDispatcher())
        yield
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from types import TracebackType
from typing import Any, Self

import httpx

from xpevents._internal.redact import redact_url
from xpevents.config.base import ConfigHolder, ConfigListener, ConfigStats
from xpevents.config.fetch import Fetched, Result, failure
from xpevents.config.options import (
    DEFAULT_BLOCKING_TIMEOUT,
    DEFAULT_UPDATE_INTERVAL,
    PollingOptions,
)
from xpevents.config.schedule import next_delay
from xpevents.decide.datafile import ProjectConfig
from xpevents.errors import ConfigError

__all__ = ["AsyncPollingConfigManager"]

logger = logging.getLogger("xpevents.config")


class AsyncPollingConfigManager:
    """Fetch and poll a datafile from the running event loop.

    Args:
        sdk_key, datafile, update_interval, blocking_timeout, url, url_template,
        datafile_access_token, datafile_cache, timeout, backoff_base: as
        :class:`~xpevents.config.PollingConfigManager` (same defaults;
        ``blocking_timeout`` is what ``async with`` waits for the first datafile).
        http_client: an ``httpx.AsyncClient`` of yours (not closed by :meth:`aclose`).

    Raises:
        ConfigError: an argument is invalid; the message names it and the fix.
    """

    def __init__(
        self,
        sdk_key: str | None = None,
        datafile: Any = None,
        *,
        update_interval: float = DEFAULT_UPDATE_INTERVAL,
        blocking_timeout: float = DEFAULT_BLOCKING_TIMEOUT,
        url: str | None = None,
        url_template: str | None = None,
        datafile_access_token: str | None = None,
        datafile_cache: Any = None,
        timeout: float = 10.0,
        backoff_base: float = 1.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        arguments = {k: v for k, v in locals().items() if k not in ("self", "http_client")}
        self.options = options = PollingOptions(owner=type(self).__name__, **arguments)
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise ConfigError(
                f"{options.owner}(http_client={http_client!r}): expected an httpx.AsyncClient"
            )
        self._source = options.source()
        self._holder = ConfigHolder(self._source.url, *options.initial_config(self._source))
        self._user_client = http_client
        self._client: httpx.AsyncClient | None = http_client
        self._task: asyncio.Task[None] | None = None
        self._attempted: asyncio.Event | None = None
        self._rng = random.Random()

    @property
    def url(self) -> str:
        """The URL polled."""
        return self._source.url

    def get_config(self) -> ProjectConfig | None:
        """The current config (``None`` before the first datafile). Never blocks."""
        return self._holder.config

    def config_now(self) -> ProjectConfig | None:
        """The current config, without waiting or starting anything."""
        return self._holder.config

    def datafile_of(self, config: ProjectConfig) -> bytes | None:
        """The JSON text of ``config`` while it is the current one."""
        return self._holder.datafile_of(config)

    def add_listener(self, listener: ConfigListener) -> None:
        """Call ``listener(config)`` after every swap (on the event loop)."""
        self._holder.add_listener(listener)

    def stats(self) -> ConfigStats:
        """Revision, fetches, 304s, changes, failures by reason, last times and error."""
        return self._holder.stats()

    async def start(self) -> None:
        """Start the polling task on the running loop. Idempotent."""
        if self._task is not None and not self._task.done():
            return
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.options.timeout)
        self._attempted = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="xpevents-datafile-poller"
        )

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait for the first fetch attempt (at most ``timeout``, default ``blocking_timeout``);
        return whether a datafile is in use."""
        await self.start()
        assert self._attempted is not None
        wait = self.options.blocking_timeout if timeout is None else timeout
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._attempted.wait()
        return self._holder.config is not None

    async def poll_now(self) -> Fetched:
        """Fetch once now."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.options.timeout)
        now = time.time()
        self._holder.fetched(now)
        source = self._source
        try:
            response = await self._client.get(
                source.url, headers=source.headers(), timeout=self.options.timeout
            )
        except Exception as exc:  # a user's client or transport may raise anything
            fetched = failure(exc)
        else:
            fetched = source.answer(response.status_code, response.headers, response.content)
        self._holder.apply(fetched, now, cache=self.options.cache_path())
        return fetched

    async def aclose(self) -> None:
        """Stop polling and close the connection pool (not a client you passed). Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._user_client is None and self._client is not None:
            await self._client.aclose()
            self._client = None

    def close(self) -> None:
        """Stop polling from outside a coroutine (the connections close with the loop)."""
        if self._task is not None:
            self._task.cancel()

    async def __aenter__(self) -> Self:
        await self.wait_ready()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                fetched = await self.poll_now()
            except Exception:  # a bug must not end polling; the next poll may work
                logger.exception("datafile poll of %s failed unexpectedly", redact_url(self.url))
                fetched = Fetched(Result.FAILED, reason="error")
            if self._attempted is not None:
                self._attempted.set()
            failures = failures + 1 if fetched.result in (Result.FAILED, Result.REFUSED) else 0
            await asyncio.sleep(
                next_delay(
                    self.options.update_interval,
                    failures=failures,
                    permanent=fetched.permanent,
                    backoff_base=self.options.backoff_base,
                    rng=self._rng,
                )
            )

    def __repr__(self) -> str:
        return f"AsyncPollingConfigManager(url={redact_url(self.url)!r})"
