"""Fault injection for the collector: latency, 5xx, 429, HTML 200 and dropped connections.

They apply to the events endpoints and to the datafile server's ``GET`` paths alike.

Each request to an events endpoint draws one random number ``u`` in ``[0, 1)`` from
a (seedable) generator and falls in one interval::

    [0, drop_rate)                          -> the connection is closed, no response
    [.., + fail_rate)                       -> 500 for the first half, 503 for the second
    [.., + rate_429)                        -> 429 with ``Retry-After: retry_after``
    [.., + html_rate)                       -> 200 with an HTML error page (a CDN's)
    [.., 1)                                 -> processed normally

so every rate is the exact expected share of requests, and a given seed yields the
same sequence of outcomes for the same sequence of requests. The rates must add up to
at most 1.
"""

from __future__ import annotations

import enum
import logging
import math
import random
from typing import Any

import msgspec

from xpevents.errors import ConfigError

__all__ = ["Fault", "FaultInjector", "FaultSettings", "FaultUpdate"]

logger = logging.getLogger("xpevents.collector.faults")


class Fault(enum.Enum):
    """What the collector does with one events request."""

    NONE = "none"
    DROP = "drop"
    HTTP_500 = "http_500"
    HTTP_503 = "http_503"
    HTTP_429 = "http_429"
    HTML_200 = "html_200"


class FaultSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Fault injection settings (the collector's ``/control`` document).

    Attributes:
        latency_ms: delay before each events request is answered (or dropped).
        fail_rate: share of events requests answered 500 or 503 (half each).
        rate_429: share of events requests answered 429 with ``Retry-After``.
        retry_after: seconds sent in the ``Retry-After`` header of a 429 (default 1;
            fractions are sent as written, e.g. ``0.2``, to keep tests fast).
        drop_rate: share of events requests whose connection is closed with no response.
        html_rate: share of requests answered 200 with an HTML page (a CDN or proxy
            error page), the case a datafile poller must refuse.
        seed: seed of the fault generator; ``None`` seeds from the OS.
    """

    latency_ms: float = 0.0
    fail_rate: float = 0.0
    rate_429: float = 0.0
    retry_after: float = 1.0
    drop_rate: float = 0.0
    html_rate: float = 0.0
    seed: int | None = None

    def validate(self) -> FaultSettings:
        """Return ``self`` if every value is in range; raise :class:`ConfigError` otherwise."""
        if not math.isfinite(self.latency_ms) or self.latency_ms < 0:
            raise ConfigError(f"latency_ms must be a number >= 0, got {self.latency_ms!r}")
        for name in ("fail_rate", "rate_429", "drop_rate", "html_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:  # also false for NaN
                raise ConfigError(f"{name} must be between 0 and 1, got {value!r}")
        total = self.fail_rate + self.rate_429 + self.drop_rate + self.html_rate
        if total > 1.0 + 1e-9:
            raise ConfigError(
                "fail_rate + rate_429 + drop_rate + html_rate must be at most 1 (each is the "
                f"share of requests that gets that fault), got {total:g}"
            )
        if not math.isfinite(self.retry_after) or self.retry_after < 0:
            raise ConfigError(
                f"retry_after must be a number of seconds >= 0, got {self.retry_after!r} "
                "(fractions such as 0.2 are sent as is, for fast tests)"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (every key present)."""
        return {f: getattr(self, f) for f in self.__struct_fields__}


class FaultUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A partial update of :class:`FaultSettings` (the body of ``POST /control``)."""

    latency_ms: float | msgspec.UnsetType = msgspec.UNSET
    fail_rate: float | msgspec.UnsetType = msgspec.UNSET
    rate_429: float | msgspec.UnsetType = msgspec.UNSET
    retry_after: float | msgspec.UnsetType = msgspec.UNSET
    drop_rate: float | msgspec.UnsetType = msgspec.UNSET
    html_rate: float | msgspec.UnsetType = msgspec.UNSET
    seed: int | msgspec.UnsetType | None = msgspec.UNSET

    def apply(self, settings: FaultSettings) -> FaultSettings:
        """Return ``settings`` with the fields set in this update replaced (validated)."""
        changes = {
            f: getattr(self, f)
            for f in self.__struct_fields__
            if getattr(self, f) is not msgspec.UNSET
        }
        return msgspec.structs.replace(settings, **changes).validate()


class FaultInjector:
    """Draws the fault for each events request according to :class:`FaultSettings`."""

    def __init__(self, settings: FaultSettings | None = None) -> None:
        self._settings = (settings or FaultSettings()).validate()
        self._random = random.Random(self._settings.seed)

    @property
    def settings(self) -> FaultSettings:
        """The current settings."""
        return self._settings

    def configure(self, settings: FaultSettings, *, reseed: bool) -> None:
        """Replace the settings; ``reseed`` restarts the generator from ``settings.seed``."""
        self._settings = settings.validate()
        if reseed:
            self._random = random.Random(settings.seed)
        logger.info("fault settings: %s", self._settings.to_dict())

    @property
    def active(self) -> bool:
        """Whether any fault or latency is configured (the fast path skips the draw)."""
        s = self._settings
        return bool(s.latency_ms or s.fail_rate or s.rate_429 or s.drop_rate or s.html_rate)

    def draw(self) -> Fault:
        """Decide the fate of one request (one random draw per call)."""
        s = self._settings
        u = self._random.random()
        edge = s.drop_rate
        if u < edge:
            return Fault.DROP
        if u < edge + s.fail_rate / 2:
            return Fault.HTTP_500
        edge += s.fail_rate
        if u < edge:
            return Fault.HTTP_503
        edge += s.rate_429
        if u < edge:
            return Fault.HTTP_429
        if u < edge + s.html_rate:
            return Fault.HTML_200
        return Fault.NONE
