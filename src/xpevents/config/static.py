"""A datafile given once: today's ``Client(datafile)``, as a config manager."""

from __future__ import annotations

from xpevents.config.base import ConfigHolder, ConfigListener, ConfigStats
from xpevents.decide.datafile import ProjectConfig

__all__ = ["StaticConfigManager"]


class StaticConfigManager:
    """Always the same config (the official SDK's ``StaticConfigManager``).

    Args:
        config: the loaded datafile (``xpevents.load_config(datafile)``).
    """

    def __init__(self, config: ProjectConfig) -> None:
        self._holder = ConfigHolder("static", config)

    def get_config(self) -> ProjectConfig | None:
        """The config given."""
        return self._holder.config

    def config_now(self) -> ProjectConfig | None:
        """The current config, without waiting or starting anything."""
        return self._holder.config

    def add_listener(self, listener: ConfigListener) -> None:
        """Never called: the config never changes."""

    def stats(self) -> ConfigStats:
        """Where it stands (always ready)."""
        return self._holder.stats()

    def close(self) -> None:
        """Nothing to release."""
