"""The relay's datafile cache: ``GET /datafiles/{sdk_key}.json`` for every SDK on the host.

Any SDK's URL template can point at the relay (the PHP SDK's
``http://127.0.0.1:8787/datafiles/%s.json``, Python's ``.../{sdk_key}.json``): it answers
from memory, with an ``ETag`` and ``Last-Modified`` of its own and ``304`` for a matching
``If-None-Match`` or ``If-Modified-Since``, while one background thread keeps each
datafile fresh on the client's polling rules (conditional GETs, jittered interval,
backoff, a whole interval after 401/403/404, validation before a new datafile replaces
the cached one: see :mod:`xpevents.config.fetch`). While the upstream is down the last
good copy is served; it is also kept on disk (``cache_dir``: written atomically, 0600)
so a restarted relay serves it before the upstream answers.

Only the SDK keys given (``--sdk-key``, repeatable) are served; any other key is a
``404``, so the relay is not an open proxy to the CDN. The authenticated path
(``/datafiles/auth/{sdk_key}.json``) needs ``Authorization: Bearer <token>``: the relay
checks a token it has not seen with the upstream, then serves the cached datafile to
requests carrying that token only (on disk: the token's SHA-256, never the token).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import re
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Any, Final

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from xpevents.config.disk import read_cache, write_cache
from xpevents.config.fetch import (
    AUTH_DATAFILE_URL_TEMPLATE,
    DATAFILE_URL_TEMPLATE,
    DatafileSource,
    Fetched,
    Result,
    failure,
)
from xpevents.config.schedule import next_delay
from xpevents.errors import ConfigError
from xpevents.serving.endpoints import json_response

__all__ = ["DatafileCache", "DatafileCacheSettings"]

logger = logging.getLogger("xpevents.relay.datafiles")

_KEY: Final = re.compile(r"[A-Za-z0-9_\-]{1,128}")
_NEVER: Final = float("inf")


@dataclass(frozen=True, slots=True, kw_only=True)
class DatafileCacheSettings:
    """What the datafile cache serves and how it refreshes (see ``docs/datafile.md``)."""

    sdk_keys: tuple[str, ...] = ()
    upstream: str | None = None
    """Base URL of the datafile upstream (``{upstream}/datafiles/{key}.json``); ``None``:
    the CDN (``cdn.optimizely.com``, ``config.optimizely.com`` for the auth path)."""
    update_interval: float = 60.0
    timeout: float = 10.0
    backoff_base: float = 1.0
    cache_dir: Path | None = None
    proxy: str | None = None

    def __post_init__(self) -> None:
        for key in self.sdk_keys:
            if not isinstance(key, str) or not _KEY.fullmatch(key):
                raise ConfigError(
                    f"--sdk-key {key!r}: an SDK key is 1-128 letters, digits, '_' or '-'"
                )
        if not self.update_interval > 0:
            raise ConfigError(f"--datafile-interval {self.update_interval!r}: must be > 0")

    def url(self, key: str, *, authenticated: bool) -> str:
        """The upstream URL of ``key``'s datafile."""
        if self.upstream is None:
            template = AUTH_DATAFILE_URL_TEMPLATE if authenticated else DATAFILE_URL_TEMPLATE
            return template.format(sdk_key=key)
        base = self.upstream.rstrip("/")
        return f"{base}/datafiles/{'auth/' if authenticated else ''}{key}.json"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class _Entry:
    """One datafile (a key, on the plain or the auth path): what is cached, when next."""

    def __init__(self, key: str, url: str, authenticated: bool) -> None:
        self.key = key
        self.authenticated = authenticated
        self.source = DatafileSource(url)
        self.lock = threading.Lock()  # one upstream request at a time per datafile
        self.body: bytes | None = None
        self.etag: str | None = None
        self.last_modified: str | None = None
        self.modified_at = 0.0
        self.token: str | None = None
        self.token_digest: str | None = None
        self.failures = 0
        self.next_due = 0.0 if not authenticated else _NEVER
        self.last_error: str | None = None
        self.counts: dict[str, int] = {"served": 0, "not_modified": 0, "fetches": 0}

    @property
    def name(self) -> str:
        return ("auth-" if self.authenticated else "") + self.key

    def keep(self, body: bytes, last_modified: str | None, now: float) -> None:
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:24] + '"'
        self.modified_at = now
        self.last_modified = last_modified or formatdate(now, usegmt=True)
        self.body = body  # last: a reader that sees the body sees its validators

    def not_modified(self, request: Request) -> bool:
        tags = request.headers.get("if-none-match")
        if tags is not None:
            return self.etag in {t.strip() for t in tags.split(",")}
        since = request.headers.get("if-modified-since")
        if since is None or self.last_modified is None:
            return False
        if since == self.last_modified:
            return True
        try:
            return parsedate_to_datetime(since) >= parsedate_to_datetime(self.last_modified)
        except (TypeError, ValueError):
            return False


class DatafileCache:
    """The datafiles of the allowed SDK keys, refreshed in the background.

    Args:
        settings: keys, upstream, interval, disk directory.
        http_client: an ``httpx.Client`` for the upstream (tests); default a pooled one
            that reads no proxy variables (``settings.proxy`` if set).
    """

    def __init__(
        self, settings: DatafileCacheSettings, *, http_client: httpx.Client | None = None
    ) -> None:
        self.settings = settings
        self._entries: dict[tuple[str, bool], _Entry] = {}
        for key in settings.sdk_keys:
            for authenticated in (False, True):
                url = settings.url(key, authenticated=authenticated)
                self._entries[(key, authenticated)] = _Entry(key, url, authenticated)
        self._own_client = http_client is None
        self._http = http_client or httpx.Client(
            timeout=settings.timeout, proxy=settings.proxy, trust_env=False
        )
        self._rng = random.Random()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        if settings.cache_dir is not None:
            self._load_disk(settings.cache_dir)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Fetch every allowed key now, and keep them fresh (idempotent)."""
        if self._thread is None and self._entries:
            self._thread = threading.Thread(
                target=self._run, name="xpevents-relay-datafiles", daemon=True
            )
            self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        """Stop refreshing and close the upstream connections. Idempotent."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._own_client:
            self._http.close()

    # -- disk ---------------------------------------------------------------------------

    def _path(self, entry: _Entry, suffix: str = ".json") -> Path | None:
        directory = self.settings.cache_dir
        return None if directory is None else directory / (entry.name + suffix)

    def _load_disk(self, directory: Path) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            logger.warning("datafile cache directory %s cannot be created (%s)", directory, exc)
            return
        for entry in self._entries.values():
            path, token_path = self._path(entry), self._path(entry, ".token")
            assert path is not None and token_path is not None
            body = read_cache(path)
            if body is None:
                continue
            fetched = entry.source.accept(body)
            if fetched.result is not Result.CHANGED:
                logger.warning("datafile cache %s ignored: %s", path, fetched.detail)
                continue
            if entry.authenticated:
                digest = read_cache(token_path)
                if digest is None:
                    continue
                entry.token_digest = digest.decode(errors="replace").strip()
            entry.keep(body, None, time.time())

    def _save(self, entry: _Entry) -> None:
        path = self._path(entry)
        if path is None or entry.body is None:
            return
        write_cache(path, entry.body)
        if entry.authenticated and entry.token_digest is not None:
            token_path = self._path(entry, ".token")
            assert token_path is not None
            write_cache(token_path, entry.token_digest.encode())

    # -- fetching -----------------------------------------------------------------------

    def _fetch(self, entry: _Entry, token: str | None) -> Fetched:
        """One conditional GET of ``entry`` upstream; the cache updated (never raises)."""
        source = entry.source
        source.access_token = token
        entry.counts["fetches"] += 1
        try:
            response = self._http.get(
                source.url, headers=source.headers(), timeout=self.settings.timeout
            )
        except Exception as exc:
            fetched = failure(exc)
        else:
            fetched = source.answer(response.status_code, response.headers, response.content)
        now = time.time()
        if fetched.result is Result.CHANGED and fetched.datafile is not None:
            entry.keep(fetched.datafile, source.last_modified, now)
        if fetched.result in (Result.CHANGED, Result.UNCHANGED):
            if token is not None:
                entry.token, entry.token_digest = token, _digest(token)
            if entry.last_error is not None:
                logger.warning("datafile %s can be fetched again", source.url)
            entry.failures, entry.last_error = 0, None
            if fetched.result is Result.CHANGED:
                self._save(entry)
        else:
            if entry.last_error is None:
                logger.error(
                    "datafile %s: %s (%s; logged once per episode)",
                    source.url,
                    fetched.detail,
                    "serving the last good copy" if entry.body else "nothing to serve yet",
                )
            entry.failures += 1
            entry.last_error = fetched.detail
        entry.next_due = time.monotonic() + next_delay(
            self.settings.update_interval,
            failures=entry.failures,
            permanent=fetched.permanent,
            backoff_base=self.settings.backoff_base,
            rng=self._rng,
        )
        return fetched

    def _run(self) -> None:
        while not self._stopping.is_set():
            now = time.monotonic()
            for entry in list(self._entries.values()):
                if entry.next_due <= now and (not entry.authenticated or entry.token):
                    with entry.lock:
                        try:
                            self._fetch(entry, entry.token)
                        except Exception:  # a bug must not end refreshing
                            logger.exception("refreshing datafile %s failed", entry.name)
                            entry.next_due = now + self.settings.update_interval
            due = min((e.next_due for e in self._entries.values()), default=_NEVER)
            wait = min(max(due - time.monotonic(), 0.01), 60.0)
            self._wake.wait(wait)
            self._wake.clear()

    def _first(self, entry: _Entry) -> None:
        """Fill an empty entry now (one request for every waiting client)."""
        with entry.lock:
            if entry.body is None:
                self._fetch(entry, None)

    def _check_token(self, entry: _Entry, token: str) -> Fetched | None:
        """Ask the upstream about a token the entry does not know (``None``: known)."""
        with entry.lock:
            if entry.token_digest is not None and hmac.compare_digest(
                entry.token_digest, _digest(token)
            ):
                if entry.token is None:  # known from disk: refresh with it from now on
                    entry.token = token
                    entry.next_due = 0.0
                    self._wake.set()
                return None
            return self._fetch(entry, token)

    # -- serving ------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        """``GET /datafiles/{key}.json`` and ``GET /datafiles/auth/{key}.json``."""
        return [
            Route("/datafiles/auth/{key}.json", self._get_auth, methods=["GET"]),
            Route("/datafiles/{key}.json", self._get, methods=["GET"]),
        ]

    def _entry(self, request: Request, authenticated: bool) -> _Entry | Response:
        entry = self._entries.get((request.path_params["key"], authenticated))
        if entry is None:
            hint = (
                "the relay serves only the datafiles of the SDK keys it was started with "
                "(--sdk-key, repeatable)"
            )
            return json_response({"error": f"unknown SDK key; {hint}"}, 404)
        return entry

    async def _get(self, request: Request) -> Response:
        entry = self._entry(request, False)
        if isinstance(entry, Response):
            return entry
        if entry.body is None:
            await run_in_threadpool(self._first, entry)
        return self._answer(entry, request)

    async def _get_auth(self, request: Request) -> Response:
        entry = self._entry(request, True)
        if isinstance(entry, Response):
            return entry
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return json_response(
                {"error": "an authenticated datafile: send 'Authorization: Bearer <token>'"},
                401,
                {"WWW-Authenticate": 'Bearer realm="datafiles"'},
            )
        if entry.token is None or not hmac.compare_digest(entry.token, token):
            fetched = await run_in_threadpool(self._check_token, entry, token)
            if fetched is not None and fetched.reason in ("unauthorized", "http_404"):
                status = 403 if fetched.reason == "unauthorized" else 404
                return json_response({"error": fetched.detail}, status)
            if fetched is not None and fetched.result is Result.FAILED:
                return self._unavailable(entry)
        return self._answer(entry, request)

    def _answer(self, entry: _Entry, request: Request) -> Response:
        body = entry.body
        if body is None:
            return self._unavailable(entry)
        headers = {"ETag": entry.etag or "", "Last-Modified": entry.last_modified or ""}
        if entry.not_modified(request):
            entry.counts["not_modified"] += 1
            return Response(status_code=304, headers=headers)
        entry.counts["served"] += 1
        return Response(body, 200, headers, media_type="application/json")

    def _unavailable(self, entry: _Entry) -> Response:
        return json_response(
            {
                "error": "no datafile cached for this SDK key yet and the upstream did not "
                f"give one: {entry.last_error or 'no answer yet'}; retry later"
            },
            503,
            {"Retry-After": "1"},
        )

    def stats(self) -> dict[str, Any]:
        """Per datafile: revision, etag, counts, failures, last error (for tests and ops)."""
        return {
            entry.name: {
                "revision": entry.source.revision,
                "etag": entry.etag,
                "cached": entry.body is not None,
                "failures": entry.failures,
                "last_error": entry.last_error,
                **entry.counts,
            }
            for entry in self._entries.values()
        }
