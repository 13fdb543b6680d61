"""Loading the ``--datafile`` (or ``--sdk-key``) of ``xpevents collector``."""

from __future__ import annotations

from pathlib import Path

import click
import httpx

from xpevents.config.fetch import datafile_url
from xpevents.decide.datafile import ProjectConfig, load_config
from xpevents.errors import ConfigError, DatafileError

__all__ = ["load_datafile"]


def load_datafile(
    path: Path | None, *, sdk_key: str | None = None, url_template: str | None = None
) -> ProjectConfig | None:
    """The datafile at ``path``, or fetched once for ``sdk_key`` (``None`` for neither);
    a bad one is a usage error naming the option."""
    if path is not None and sdk_key is not None:
        raise click.UsageError("give --datafile or --sdk-key, not both")
    if sdk_key is not None:
        return _fetch(sdk_key, url_template)
    if url_template is not None:
        raise click.UsageError("--datafile-url-template needs --sdk-key")
    if path is None:
        return None
    try:
        return load_config(path.read_bytes())
    except (OSError, DatafileError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--datafile") from None


def _fetch(sdk_key: str, url_template: str | None) -> ProjectConfig:
    try:
        url = datafile_url(sdk_key, url_template=url_template, owner="--sdk-key")
        response = httpx.get(url, timeout=10.0, follow_redirects=True)
        if response.status_code != 200:
            raise ConfigError(f"{url} answered HTTP {response.status_code} (check the SDK key)")
        return load_config(response.content)
    except (ConfigError, DatafileError, httpx.HTTPError) as exc:
        raise click.BadParameter(f"{sdk_key}: {exc}", param_hint="--sdk-key") from None
