"""Argument checks shared by the dispatchers: one clear ConfigError per bad argument."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from xpevents.errors import ConfigError


def positive_seconds(name: str, value: object, *, owner: str, allow_zero: bool = False) -> float:
    """A finite number of seconds (> 0, or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            f"{owner}({name}={value!r}): expected a number of seconds, got {type(value).__name__}"
        )
    number = float(value)
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{owner}({name}={value!r}): must be a finite number of seconds {bound}")
    return number


def positive_int(name: str, value: object, *, owner: str, minimum: int = 1) -> int:
    """An int >= ``minimum`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{owner}({name}={value!r}): expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ConfigError(f"{owner}({name}={value!r}): must be >= {minimum}")
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
