"""Helpers for applications that keep the official ``optimizely-sdk``.

:func:`use_fast_uuids` is an explicit opt-in for one measured problem: the official SDK
draws each event's uuid with ``str(uuid.uuid4())``, an ``os.urandom`` call that releases
and retakes the GIL on every ``activate``/``track``. In a busy caller that restarts the
GIL wait of a batching dispatcher's sender threads over and over, and they hardly run:
in a 100,000-call burst through ``ForwardingEventProcessor(BatchDispatcher())`` on a
2-core box, 9-23% were delivered with the SDK's own uuids and 99% with ours
(``python -m bench official_uuid``). xpevents' uuids are RFC 4122 version-4 strings from
a private generator seeded from ``os.urandom`` and reseeded in every forked child
(:mod:`xpevents.events.uuids`).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from xpevents.errors import XpeventsError
from xpevents.events.uuids import uuid4_str

__all__ = ["use_fast_uuids"]


def use_fast_uuids() -> Callable[[], None]:
    """Make the official SDK build event uuids with xpevents' generator.

    Only the official SDK's event module is changed (its module-level ``uuid``
    reference, read by ``UserEvent._get_uuid``); the standard library's ``uuid`` module
    and every other user of it are untouched. Payloads keep their format: a random
    version-4 uuid string per event.

    Returns:
        A function that restores the SDK's own uuids.

    Raises:
        XpeventsError: optimizely-sdk is not installed, or its event module no longer
            looks the way this helper expects (then nothing is changed).
    """
    try:
        from optimizely.event import user_event
    except ImportError as exc:
        raise XpeventsError(
            "use_fast_uuids() needs the official optimizely-sdk package (pip install "
            "optimizely-sdk)"
        ) from exc
    module: Any = user_event
    original = getattr(module, "uuid", None)
    if not isinstance(original, types.ModuleType) or not callable(
        getattr(getattr(module, "UserEvent", None), "_get_uuid", None)
    ):
        raise XpeventsError(
            "use_fast_uuids(): optimizely.event.user_event does not generate uuids with "
            "uuid.uuid4() as expected (a newer optimizely-sdk?); nothing was changed"
        )
    # str() of the string uuid4_str returns is the same string, which is what the SDK's
    # `str(uuid.uuid4())` needs.
    module.uuid = types.SimpleNamespace(uuid4=uuid4_str)

    def restore() -> None:
        module.uuid = original

    return restore
