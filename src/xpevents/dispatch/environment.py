"""Two environment variables that make a whole deployment safe for dev and CI.

``XPEVENTS_ENDPOINT``
    The endpoint of every dispatcher created without ``endpoint=`` (a full URL, or a
    base such as ``http://127.0.0.1:8788`` that maps the US and EU paths). An explicit
    ``endpoint=`` argument wins. Point staging at a collector and no event reaches
    production, whatever the code says.
``XPEVENTS_DISABLED``
    ``1``/``true``/``yes``/``on``: every dispatcher accepts events and sends nothing; each
    is counted as dropped with reason ``"disabled"`` (``stats().dropped``), and one INFO
    line says so at construction. ``0``/``false``/``no``/``off`` or empty: normal.

A bad value raises :class:`~xpevents.ConfigError` at construction, naming the variable.
"""

from __future__ import annotations

import logging
import os
from typing import Final

from xpevents.errors import ConfigError
from xpevents.send.endpoint import validate_url

__all__ = ["DISABLED_VARIABLE", "ENDPOINT_VARIABLE", "endpoint_default", "sending_disabled"]

logger = logging.getLogger("xpevents.dispatch")

ENDPOINT_VARIABLE: Final = "XPEVENTS_ENDPOINT"
DISABLED_VARIABLE: Final = "XPEVENTS_DISABLED"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"", "0", "false", "no", "off"})


def endpoint_default(endpoint: str | None, owner: str) -> str | None:
    """``endpoint`` when given, else ``$XPEVENTS_ENDPOINT`` (validated), else ``None``."""
    if endpoint is not None:
        return endpoint
    value = os.environ.get(ENDPOINT_VARIABLE)
    if value is None or value == "":
        return None
    try:
        validate_url(value, argument=ENDPOINT_VARIABLE)
    except ConfigError as exc:
        raise ConfigError(f"{owner}: {exc}") from None
    logger.info("%s sends to %s (from %s)", owner, value, ENDPOINT_VARIABLE)
    return value


def sending_disabled(owner: str) -> bool:
    """Whether ``$XPEVENTS_DISABLED`` turns sending off (logged once per dispatcher)."""
    raw = os.environ.get(DISABLED_VARIABLE)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in _FALSE:
        return False
    if value not in _TRUE:
        raise ConfigError(
            f"{owner}: {DISABLED_VARIABLE}={raw!r} is not a switch; use 1/true/yes/on to "
            "send nothing, 0/false/no/off (or unset) to send"
        )
    logger.info(
        "%s sends nothing: %s=%s (events are counted as dropped, reason 'disabled')",
        owner,
        DISABLED_VARIABLE,
        raw,
    )
    return True
