"""One datafile URL, polled: the conditional request, and what its answer means.

Sans-I/O: :class:`DatafileSource` builds the headers of the next request
(``If-None-Match`` from the last ``ETag``, ``If-Modified-Since`` from the last
``Last-Modified``, ``Authorization: Bearer`` for an authenticated datafile) and turns an
answer into a :class:`Fetched` outcome. A new datafile is decoded and validated here,
**before** anything may swap it in: not JSON, wrong schema, an unsupported version, a
CDN error page answered with 200, a datafile the official SDK refuses, or an older
revision than the current one never replaces a good config.

The polling managers (thread and asyncio) and the relay's datafile cache do the I/O and
the waiting around it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import httpx

from xpevents._internal.redact import redact_url
from xpevents.decide.datafile import ProjectConfig, load_config
from xpevents.errors import ConfigError, DatafileError

__all__ = [
    "AUTH_DATAFILE_URL_TEMPLATE",
    "DATAFILE_URL_TEMPLATE",
    "DatafileSource",
    "Fetched",
    "Result",
    "datafile_url",
    "failure",
]

DATAFILE_URL_TEMPLATE: Final = "https://cdn.optimizely.com/datafiles/{sdk_key}.json"
"""The CDN's URL of a datafile (the official SDKs' default)."""
AUTH_DATAFILE_URL_TEMPLATE: Final = "https://config.optimizely.com/datafiles/auth/{sdk_key}.json"
"""The URL of an authenticated datafile (with ``datafile_access_token``)."""


def datafile_url(
    sdk_key: str | None,
    *,
    url: str | None = None,
    url_template: str | None = None,
    authenticated: bool = False,
    owner: str = "PollingConfigManager",
) -> str:
    """The URL to poll: ``url`` when given, else ``url_template`` filled with ``sdk_key``.

    Raises:
        ConfigError: neither ``sdk_key`` nor ``url``, or a template without ``{sdk_key}``.
    """
    if url is not None:
        if not isinstance(url, str) or not url.strip() or url != url.strip():
            raise ConfigError(
                f"{owner}(url={redact_url(url)!r}): expected an http(s) URL without spaces"
            )
        return url
    if not isinstance(sdk_key, str) or not sdk_key.strip():
        raise ConfigError(
            f"{owner}(sdk_key={sdk_key!r}): an SDK key (or url=) is required to fetch a "
            "datafile; find it under Settings > Environments in Optimizely"
        )
    template = url_template or (
        AUTH_DATAFILE_URL_TEMPLATE if authenticated else DATAFILE_URL_TEMPLATE
    )
    if "{sdk_key}" not in template:
        raise ConfigError(
            f"{owner}(url_template={template!r}): the template must contain '{{sdk_key}}', "
            "e.g. 'http://127.0.0.1:8787/datafiles/{sdk_key}.json'"
        )
    try:
        return template.format(sdk_key=sdk_key)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"{owner}(url_template={template!r}): not a valid template ({exc}); only "
            "'{sdk_key}' is filled in"
        ) from None


class Result(enum.Enum):
    """What one fetch changed."""

    CHANGED = "changed"
    """A new, valid, newer datafile: swap it in."""
    UNCHANGED = "unchanged"
    """304, or the same revision again: nothing to do."""
    REFUSED = "refused"
    """An answer with a datafile that must not replace the current one."""
    FAILED = "failed"
    """No datafile: an error answer, a timeout, the network."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """The outcome of one fetch.

    Attributes:
        result: what it changed.
        config: the validated new config (``CHANGED`` only).
        datafile: its text, as received (``CHANGED`` only: for caches and relays).
        reason: why it failed or was refused (``http_404``, ``unauthorized``,
            ``invalid_datafile``, ``older_revision``, ``timeout``, ``network``...).
        detail: a human-readable description.
        permanent: retrying soon cannot help (401/403/404): wait a whole interval.
    """

    result: Result
    config: ProjectConfig | None = None
    datafile: bytes | None = None
    reason: str = ""
    detail: str = ""
    permanent: bool = False


_UNCHANGED: Final = Fetched(Result.UNCHANGED)


def failure(error: BaseException) -> Fetched:
    """The outcome of a request that got no answer (timeout, network, anything else)."""
    if isinstance(error, httpx.TimeoutException):
        return Fetched(Result.FAILED, reason="timeout", detail=f"timed out ({error!r})")
    if isinstance(error, httpx.HTTPError):
        return Fetched(Result.FAILED, reason="network", detail=f"network error ({error!r})")
    return Fetched(Result.FAILED, reason="error", detail=f"unexpected error ({error!r})")


def _revision_number(revision: str | None) -> int | None:
    try:
        return int(revision) if revision is not None else None
    except ValueError:
        return None


class DatafileSource:
    """The conditional-request state of one datafile URL.

    Args:
        url: the URL polled.
        access_token: ``datafile_access_token`` for an authenticated datafile.
    """

    def __init__(self, url: str, *, access_token: str | None = None) -> None:
        self.url = url
        self.access_token = access_token
        self.etag: str | None = None
        self.last_modified: str | None = None
        self.revision: str | None = None

    def headers(self) -> dict[str, str]:
        """The headers of the next request."""
        headers = {"Accept": "application/json"}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        if self.access_token:
            headers["Authorization"] = f"Bearer {self.access_token}"
        return headers

    def forget(self) -> None:
        """Drop the validators: the next request fetches the whole datafile again."""
        self.etag = self.last_modified = None

    def answer(self, status: int, headers: Mapping[str, str], body: bytes) -> Fetched:
        """What an HTTP answer means (validators kept only for an accepted datafile)."""
        if status == 304:
            return _UNCHANGED
        if status in (401, 403):
            return Fetched(
                Result.FAILED,
                reason="unauthorized",
                detail=f"HTTP {status}: the datafile_access_token is missing or wrong",
                permanent=True,
            )
        if status == 404:
            return Fetched(
                Result.FAILED,
                reason="http_404",
                detail="HTTP 404: no datafile at this URL (check the SDK key)",
                permanent=True,
            )
        if not 200 <= status < 300:
            return Fetched(Result.FAILED, reason=f"http_{status}", detail=f"HTTP {status}")
        outcome = self.accept(body)
        if outcome.result is Result.CHANGED or outcome.result is Result.UNCHANGED:
            self.etag = headers.get("etag") or None
            self.last_modified = headers.get("last-modified") or None
        return outcome

    def accept(self, body: bytes) -> Fetched:
        """Validate a datafile body against the current revision (also for files, caches)."""
        try:
            config = load_config(body)
        except DatafileError as exc:
            return Fetched(Result.REFUSED, reason="invalid_datafile", detail=str(exc))
        if not config.usable:
            reasons = "; ".join(config.warnings) or "the official SDK refuses it"
            return Fetched(Result.REFUSED, reason="unusable_datafile", detail=reasons)
        if config.revision == self.revision:
            return _UNCHANGED
        current, new = _revision_number(self.revision), _revision_number(config.revision)
        if current is not None and new is not None and new < current:
            return Fetched(
                Result.REFUSED,
                reason="older_revision",
                detail=f"revision {config.revision} is older than the current {self.revision}",
            )
        self.revision = config.revision
        return Fetched(Result.CHANGED, config=config, datafile=bytes(body))
