"""Where ``xpevents datafile``/``decide`` read a datafile: a file, stdin, or an SDK key."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from xpevents.config.fetch import datafile_url
from xpevents.errors import ConfigError
from xpevents.example import example_datafile

__all__ = ["read_datafile"]

FETCH_TIMEOUT = 10.0
"""Seconds allowed for fetching a datafile by SDK key."""


def read_datafile(
    path: str | None,
    *,
    sdk_key: str | None = None,
    url_template: str | None = None,
    access_token: str | None = None,
) -> str:
    """The datafile text from ``path`` (``-``: stdin; ``example``: the shipped example).

    With ``sdk_key`` instead, fetch it from the CDN (``url_template`` overrides the
    address, e.g. a relay's ``http://127.0.0.1:8787/datafiles/{sdk_key}.json``).

    Raises:
        ConfigError: neither or both sources, an unreadable file, a failed fetch.
    """
    if (path is None) == (sdk_key is None):
        raise ConfigError("give a datafile FILE (or - for stdin, or 'example') or --sdk-key")
    if path is not None:
        return _read_path(path)
    url = datafile_url(
        sdk_key,
        url_template=url_template,
        authenticated=access_token is not None,
        owner="--sdk-key",
    )
    headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
    try:
        response = httpx.get(url, headers=headers, timeout=FETCH_TIMEOUT, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise ConfigError(f"cannot fetch {url}: {exc}") from None
    if response.status_code != 200:
        raise ConfigError(
            f"cannot fetch {url}: HTTP {response.status_code} (check the SDK key; an "
            "authenticated datafile needs --access-token)"
        )
    return response.text


def _read_path(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    if path == "example":
        return example_datafile()
    try:
        return Path(path).read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
