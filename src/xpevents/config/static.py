"""A datafile given once: today's ``Client(datafile)``, as a config manager."""

from __future__ import annotations

from xpevents.config.base import ConfigHolder, ConfigListener, ConfigStats
from xpevents.decide.datafile import ProjectConfig

__all__ = ["StaticConfigManager"]


class StaticConfigManager:
    """Always the same config (the official SDK's ``StaticConfigManager``).

    Args:
        config: the loaded datafile (``xpevents.load_config(datafile)``).
        datafile: the JSON text it was loaded from (for ``get_optimizely_config()``).
    """

    def __init__(self, config: ProjectConfig, datafile: str | bytes | None = None) -> None:
        text = datafile.encode() if isinstance(datafile, str) else datafile
        self._holder = ConfigHolder("static", config, text)

    def get_config(self) -> ProjectConfig | None:
        """The config given."""
        return self._holder.config

    def config_now(self) -> ProjectConfig | None:
        """The current config, without waiting or starting anything."""
        return self._holder.config

    def datafile_of(self, config: ProjectConfig) -> bytes | None:
        """The JSON text of ``config`` while it is the current one."""
        return self._holder.datafile_of(config)

    def add_listener(self, listener: ConfigListener) -> None:
        """Never called: the config never changes."""

    def stats(self) -> ConfigStats:
        """Where it stands (always ready)."""
        return self._holder.stats()

    def close(self) -> None:
        """Nothing to release."""
