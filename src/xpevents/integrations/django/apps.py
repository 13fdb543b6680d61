"""The Django ``AppConfig`` that builds the client from ``settings.XPEVENTS``."""

from __future__ import annotations

import os
from collections.abc import Mapping

from django.apps import AppConfig
from django.conf import settings

from xpevents.errors import ConfigError
from xpevents.integrations import django as integration
from xpevents.integrations.settings import Settings, build


class XpeventsConfig(AppConfig):  # type: ignore[misc]  # django ships no types
    """Creates the process's client in :meth:`ready` (once, idempotent)."""

    name = "xpevents.integrations.django"
    label = "xpevents"
    verbose_name = "xpevents"

    def ready(self) -> None:
        """Read ``settings.XPEVENTS`` and build the client.

        Raises:
            ConfigError: ``XPEVENTS`` is missing or one of its keys is wrong (named).
        """
        if integration._installed:
            return
        options = getattr(settings, "XPEVENTS", None)
        if options is None:
            raise ConfigError(
                "settings.XPEVENTS is missing: the 'xpevents.integrations.django' app needs "
                "at least {'DATAFILE_PATH': ...} or {'DATAFILE': ...} (docs/integrations.md)"
            )
        path = options.get("DATAFILE_PATH") if isinstance(options, Mapping) else None
        if isinstance(path, os.PathLike):  # BASE_DIR / "datafile.json"
            options = {**options, "DATAFILE_PATH": os.fspath(path)}
        parsed = Settings.from_mapping(options, source="settings.XPEVENTS", spell=str.upper)
        integration._install(build(parsed))
