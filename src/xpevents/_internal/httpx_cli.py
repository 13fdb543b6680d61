"""Defer httpx's command-line client until someone runs it.

``import httpx`` also imports ``httpx._main``, its command-line client, whenever the
client's own dependencies (click, rich, pygments) are installed, and xpevents installs
them for its CLI. That is about 5.7 MB of resident memory and 80 modules in every
process that imports xpevents (every gunicorn worker), for a command nobody runs from
inside an application.

:func:`defer` runs when this module is imported, which ``xpevents/__init__.py`` does
before anything that imports httpx. If httpx is not imported yet, it puts
a small stand-in for ``httpx._main`` in ``sys.modules``; ``httpx.main`` is then the
stand-in's :func:`main`, which loads the real command-line client on its first call
and runs it, so ``httpx.main()`` keeps working. If httpx was imported already (by the
application, before xpevents), nothing is changed.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__all__ = ["defer"]

_NAME = "httpx._main"


def _main(*args: Any, **kwargs: Any) -> Any:
    """httpx's ``main``, loaded on the first call (see the module docstring)."""
    if sys.modules.get(_NAME) is _STAND_IN:
        del sys.modules[_NAME]
    import importlib

    real = importlib.import_module(_NAME)
    return real.main(*args, **kwargs)


_STAND_IN = types.ModuleType(_NAME, "Stand-in for httpx's command-line client (see xpevents).")
_STAND_IN.main = _main  # type: ignore[attr-defined]


def defer() -> None:
    """Put the stand-in in place unless httpx (or its CLI) is imported already."""
    if "httpx" not in sys.modules and _NAME not in sys.modules:
        sys.modules[_NAME] = _STAND_IN


defer()
