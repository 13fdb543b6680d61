"""Which config manager a :class:`~xpevents.Client` follows, from its constructor arguments.

The official SDK's rule, with clear errors instead of silently ignored arguments:

* ``config_manager=...``: that one (then ``datafile``, ``sdk_key``,
  ``datafile_access_token`` and ``datafile_cache`` belong to the manager, not here);
* ``sdk_key=...``: a :class:`~xpevents.config.PollingConfigManager` polling the CDN
  (the authenticated URL with ``datafile_access_token``), the ``datafile`` given being
  the fallback until the first fetch succeeds, ``datafile_cache`` its disk cache;
* ``datafile`` alone: a :class:`~xpevents.config.StaticConfigManager` (today's client).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import msgspec

from xpevents.client.inputs import load_datafile
from xpevents.config.base import ConfigManager
from xpevents.config.polling import PollingConfigManager
from xpevents.config.static import StaticConfigManager
from xpevents.errors import ConfigError

__all__ = ["choose_config_manager"]


def _check_manager(config_manager: object, others: Mapping[str, object]) -> ConfigManager:
    missing = [
        name
        for name in ("get_config", "add_listener", "close")
        if not callable(getattr(config_manager, name, None))
    ]
    if missing:
        raise ConfigError(
            f"Client(config_manager={config_manager!r}): it has no {', '.join(missing)}; "
            "pass an xpevents.config manager or an object with get_config(), "
            "add_listener(listener) and close()"
        )
    given = [name for name, value in others.items() if value is not None]
    if given:
        raise ConfigError(
            f"Client({', '.join(given)}=..., config_manager=...): give "
            f"{' and '.join(given)} to the config manager, not to the client"
        )
    return config_manager  # type: ignore[return-value]


def _check_key(sdk_key: object) -> str:
    if not isinstance(sdk_key, str) or not sdk_key.strip() or sdk_key != sdk_key.strip():
        raise ConfigError(
            f"Client(sdk_key={sdk_key!r}): expected the SDK key as a non-empty str without "
            "spaces (Settings > Environments in Optimizely)"
        )
    return sdk_key


def choose_config_manager(
    *,
    datafile: Any,
    sdk_key: Any,
    datafile_access_token: Any,
    config_manager: Any,
    datafile_cache: Any,
    strict: bool,
    log: logging.Logger,
) -> ConfigManager:
    """The manager to follow (the client closes it in ``close()``, whoever created it).

    Raises:
        ConfigError: an argument is invalid or two of them contradict each other.
        DatafileError: a datafile given alone cannot be decoded.
    """
    if config_manager is not None:
        others = {
            "datafile": datafile,
            "sdk_key": sdk_key,
            "datafile_access_token": datafile_access_token,
            "datafile_cache": datafile_cache,
        }
        return _check_manager(config_manager, others)
    if datafile is not None and not isinstance(datafile, str | bytes | Mapping):
        raise ConfigError(
            f"Client(datafile={type(datafile).__name__}): expected the datafile as JSON text "
            "(str or bytes) or a decoded dict"
        )
    if sdk_key is None:
        for name, value in (
            ("datafile_access_token", datafile_access_token),
            ("datafile_cache", datafile_cache),
        ):
            if value is not None:
                raise ConfigError(f"Client({name}=...): needs sdk_key= (the datafile to fetch)")
        if datafile is None:
            raise ConfigError(
                "Client(): give a datafile, an sdk_key (to fetch and poll it) or a config_manager"
            )
        config = load_datafile(datafile, strict, log)
        text = datafile if isinstance(datafile, str | bytes) else msgspec.json.encode(datafile)
        return StaticConfigManager(config, text)
    if datafile_cache is not None and not isinstance(datafile_cache, str | os.PathLike):
        raise ConfigError(f"Client(datafile_cache={datafile_cache!r}): expected a file path")
    manager = PollingConfigManager(
        _check_key(sdk_key),
        datafile,
        datafile_access_token=datafile_access_token,
        datafile_cache=datafile_cache,
    )
    return manager
