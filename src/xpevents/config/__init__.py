"""Where the client's datafile comes from, and how a new one replaces it.

* :class:`StaticConfigManager`: a datafile given once (``Client(datafile)``).
* :class:`PollingConfigManager`: fetch by SDK key (or URL) and poll from a thread,
  with conditional GETs, jitter, backoff, validation before every swap and an optional
  disk cache; :class:`AsyncPollingConfigManager`: the same from an asyncio task.
* :class:`FileConfigManager`: a datafile on disk, watched.

Every manager implements :class:`ConfigManager` (``get_config()``, ``add_listener()``,
``close()``) and reports :class:`ConfigStats`. See ``docs/datafile.md``.
"""

from xpevents.config.aio import AsyncPollingConfigManager
from xpevents.config.base import ConfigListener, ConfigManager, ConfigStats
from xpevents.config.fetch import AUTH_DATAFILE_URL_TEMPLATE, DATAFILE_URL_TEMPLATE
from xpevents.config.files import FileConfigManager
from xpevents.config.polling import PollingConfigManager
from xpevents.config.static import StaticConfigManager

__all__ = [
    "AUTH_DATAFILE_URL_TEMPLATE",
    "DATAFILE_URL_TEMPLATE",
    "AsyncPollingConfigManager",
    "ConfigListener",
    "ConfigManager",
    "ConfigStats",
    "FileConfigManager",
    "PollingConfigManager",
    "StaticConfigManager",
]
