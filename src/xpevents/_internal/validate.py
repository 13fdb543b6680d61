"""Argument checks: one clear :class:`~xpevents.ConfigError` per bad argument.

Every message has the shape ``Owner(name=value): what was expected``, so a user sees
which constructor, which argument and what to pass instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from xpevents.errors import ConfigError

__all__ = [
    "choice",
    "number",
    "optional_callable",
    "positive_int",
    "positive_number",
    "positive_seconds",
    "sender_count",
]

_T = TypeVar("_T")


def positive_seconds(name: str, value: object, *, owner: str, allow_zero: bool = False) -> float:
    """A finite number of seconds (> 0, or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            f"{owner}({name}={value!r}): expected a number of seconds, got {type(value).__name__}"
        )
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{owner}({name}={value!r}): must be a finite number of seconds {bound}")
    return seconds


def positive_int(name: str, value: object, *, owner: str, minimum: int = 1) -> int:
    """An int >= ``minimum`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{owner}({name}={value!r}): expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ConfigError(f"{owner}({name}={value!r}): must be >= {minimum}")
    return value


def positive_number(name: str, value: object, *, owner: str) -> float:
    """A finite number > 0 (an int or a float; bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            f"{owner}({name}={value!r}): expected a number, got {type(value).__name__}"
        )
    if not math.isfinite(float(value)) or value <= 0:
        raise ConfigError(f"{owner}({name}={value!r}): must be a finite number > 0")
    return float(value)


def number(
    name: str, value: object, *, owner: str, minimum: float, allow_none: bool = False
) -> float | None:
    """A finite number >= ``minimum`` (or ``None`` with ``allow_none``)."""
    if value is None:
        if not allow_none:
            raise ConfigError(f"{owner}({name}=None): a number is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            f"{owner}({name}={value!r}): expected a number, got {type(value).__name__}"
        )
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{owner}({name}={value!r}): must be a finite number >= {minimum:g}")
    return float(value)


def choice(name: str, value: _T, choices: Iterable[object], *, owner: str) -> _T:
    """``value`` if it is one of ``choices``."""
    options = tuple(choices)
    if value not in options:
        raise ConfigError(
            f"{owner}({name}={value!r}): expected one of {', '.join(repr(c) for c in options)}"
        )
    return value


def optional_callable(name: str, value: object, *, owner: str) -> Callable[..., Any] | None:
    """None or a callable."""
    if value is not None and not callable(value):
        raise ConfigError(
            f"{owner}({name}={value!r}): expected a callable or None, got {type(value).__name__}"
        )
    return value


def sender_count(value: object, *, owner: str) -> int:
    """``max_concurrent_requests``: an int from 1 to 64."""
    count = positive_int("max_concurrent_requests", value, owner=owner)
    if count > 64:
        raise ConfigError(
            f"{owner}(max_concurrent_requests={value!r}): must be at most 64; batches grow "
            "with load, so a few senders are enough"
        )
    return count
