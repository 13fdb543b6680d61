"""Polling a datafile URL from a background thread (the official SDK's PollingConfigManager,
done properly).

* Conditional GETs (``If-None-Match`` / ``If-Modified-Since``): a 304 costs one small
  request and no parsing.
* A jittered interval, exponential backoff on errors, a whole interval after a 401, 403
  or 404 (:mod:`xpevents.config.schedule`); one pooled ``httpx`` client (proxy variables
  honoured); ``timeout`` per request.
* A new datafile is validated before it replaces the current one; a bad one never does
  (:mod:`xpevents.config.fetch`); the last good one optionally on disk
  (``datafile_cache``).
* ``get_config()`` waits for the first fetch *attempt* only (at most
  ``blocking_timeout``), once: while the CDN is down it answers at once (``None``, or
  the fallback datafile), instead of blocking every call as the official SDK does.
* Fork rule: a forked child (gunicorn ``--preload``) does not inherit the parent's
  thread; its first ``get_config()`` starts its own poller, with the config it inherited
  in use meanwhile.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

import httpx

from xpevents._internal import forking
from xpevents._internal.closing import Closing
from xpevents._internal.redact import redact_url
from xpevents.config.base import ConfigHolder, ConfigListener, ConfigStats
from xpevents.config.fetch import DatafileSource, Fetched, Result, failure
from xpevents.config.options import (
    DEFAULT_BLOCKING_TIMEOUT,
    DEFAULT_UPDATE_INTERVAL,
    PollingOptions,
)
from xpevents.config.schedule import next_delay
from xpevents.decide.datafile import ProjectConfig
from xpevents.errors import ConfigError

__all__ = ["PollingConfigManager", "fetch_once"]

logger = logging.getLogger("xpevents.config")


def fetch_once(client: httpx.Client, options: PollingOptions, source: DatafileSource) -> Fetched:
    """One conditional GET of ``source`` and what its answer means (never raises)."""
    try:
        response = client.get(source.url, headers=source.headers(), timeout=options.timeout)
    except Exception as exc:  # a user's client or transport may raise anything
        return failure(exc)
    return source.answer(response.status_code, response.headers, response.content)


class PollingConfigManager(Closing):
    """Fetch the datafile by SDK key (or URL), poll it, swap new revisions in.

    Args:
        sdk_key: the project environment's SDK key; the URL is
            ``url_template.format(sdk_key=...)``.
        datafile: a datafile (str, bytes or dict) to decide with until the first fetch
            succeeds. Default ``None``.
        update_interval: seconds between polls. Default 300 (5 minutes).
        blocking_timeout: seconds ``get_config()`` waits, once, for the first fetch
            attempt. Default 10.
        url: poll this URL instead of the template's.
        url_template: default ``https://cdn.optimizely.com/datafiles/{sdk_key}.json``, or
            ``https://config.optimizely.com/datafiles/auth/{sdk_key}.json`` with a token.
        datafile_access_token: for an authenticated datafile (``Authorization: Bearer``).
        datafile_cache: a file where the last good datafile is kept (written atomically,
            mode 0600) and read at start. Default ``None``.
        timeout: seconds per request. Default 10.
        backoff_base: seconds of the first retry after a failure (doubling up to the
            interval). Default 1.
        http_client: an ``httpx.Client`` of yours (not closed by :meth:`close`).
        start: start polling now (default); ``False``: at the first :meth:`get_config`
            (or :meth:`start`).

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
        http_client: httpx.Client | None = None,
        start: bool = True,
    ) -> None:
        arguments = {k: v for k, v in locals().items() if k not in ("self", "http_client", "start")}
        self.options = options = PollingOptions(owner=type(self).__name__, **arguments)
        if http_client is not None and not isinstance(http_client, httpx.Client):
            raise ConfigError(
                f"{options.owner}(http_client={http_client!r}): expected an httpx.Client"
            )
        self._source = options.source()
        self._holder = ConfigHolder(self._source.url, *options.initial_config(self._source))
        self._own_client = http_client is None
        self._client = http_client or httpx.Client(timeout=options.timeout)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._attempted = threading.Event()
        self._waited = False
        self._rng = random.Random()
        self._closed = False
        forking.track(self, forking.Stage.CONFIG)
        if start:
            self.start()

    @property
    def url(self) -> str:
        """The URL polled."""
        return self._source.url

    def start(self) -> None:
        """Start the poller thread (idempotent; in a forked child, its own)."""
        with self._lock:
            if self._closed or self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name="xpevents-datafile-poller", daemon=True
            )
            self._thread.start()

    def get_config(self) -> ProjectConfig | None:
        """The current config; waits (once, at most ``blocking_timeout``) for the first fetch."""
        config = self._holder.config
        if self._thread is None:  # start=False, or the first call in a forked child
            self.start()
        if config is None and not self._waited:
            self._attempted.wait(self.options.blocking_timeout)
            self._waited = True
            config = self._holder.config
        return config

    def config_now(self) -> ProjectConfig | None:
        """The current config, without waiting or starting anything."""
        return self._holder.config

    def datafile_of(self, config: ProjectConfig) -> bytes | None:
        """The JSON text of ``config`` while it is the current one."""
        return self._holder.datafile_of(config)

    def add_listener(self, listener: ConfigListener) -> None:
        """Call ``listener(config)`` after every swap (in the poller thread)."""
        self._holder.add_listener(listener)

    def stats(self) -> ConfigStats:
        """Revision, fetches, 304s, changes, failures by reason, last times and error."""
        return self._holder.stats()

    def poll_now(self) -> Fetched:
        """Fetch once now, in the caller's thread (tests, and ``xpevents datafile``)."""
        now = time.time()
        self._holder.fetched(now)
        fetched = fetch_once(self._client, self.options, self._source)
        self._holder.apply(fetched, now, cache=self.options.cache_path())
        return fetched

    def close(self, timeout: float = 2.0) -> None:
        """Stop polling and close the connection pool (not a client you passed). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._stopping.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if self._own_client:
            self._client.close()
        forking.untrack(self)

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                fetched = self.poll_now()
            except Exception:  # a bug must not end polling; the next poll may work
                logger.exception("datafile poll of %s failed unexpectedly", redact_url(self.url))
                fetched = Fetched(Result.FAILED, reason="error")
            self._attempted.set()
            failed = fetched.result in (Result.FAILED, Result.REFUSED)
            failures = failures + 1 if failed else 0
            delay = next_delay(
                self.options.update_interval,
                failures=failures,
                permanent=fetched.permanent,
                backoff_base=self.options.backoff_base,
                rng=self._rng,
            )
            self._stopping.wait(delay)

    def _reset_after_fork(self) -> None:
        # The parent's thread and sockets are not ours: a fresh pool, no thread yet (the
        # first get_config() starts one), the inherited config kept meanwhile.
        self._lock = threading.Lock()
        self._thread = None
        self._stopping = threading.Event()
        self._attempted = threading.Event()
        self._waited = False
        self._rng = random.Random()
        if self._own_client and not self._closed:
            self._client = httpx.Client(timeout=self.options.timeout)

    def __repr__(self) -> str:
        interval = self.options.update_interval
        return f"PollingConfigManager(url={redact_url(self.url)!r}, interval={interval})"
