"""Decision reasons that are also log lines, at the official SDK's levels.

optimizely-sdk logs each reason of a decision as it finds it (``User "u" is in variation
"v" of experiment e.`` at INFO, ``Evaluating audiences for rule 1: [...]`` at DEBUG ...),
whether or not ``INCLUDE_REASONS`` was asked for. The decider only builds reason strings
when it is handed a list; :func:`reasons_for` hands it a :class:`LoggedReasons` when the
client's logger would print INFO or DEBUG lines, so a decision costs nothing extra with
logging at its default level, and prints the official lines when it is turned up.

Only DEBUG and INFO lines are logged here. The few reasons the official SDK logs at
WARNING or ERROR (a ``$opt_bucketing_id`` that is not a string, a CMAB fetch that failed)
are logged where they happen, whatever the level, and so are not logged twice.

Repeats in the official reasons list (the reasons gathered before each experiment of a
flag) come from ``extend``, which does not log: each line is logged once, when it is
found, as the official SDK does.
"""

from __future__ import annotations

import logging

__all__ = ["LoggedReasons", "fresh", "level_of", "reasons_for"]

_DEBUG = logging.DEBUG
_INFO = logging.INFO
_WARNING = logging.WARNING
_ERROR = logging.ERROR

_BUCKETING_ID = "Bucketing ID attribute is not a string. Defaulted to user_id."
_DEBUG_PREFIXES = ("Evaluating audiences for ", "There is no rollout of feature ")


def level_of(line: str) -> int:
    """The level the official SDK logs the reason ``line`` at."""
    if line.startswith(_DEBUG_PREFIXES):
        return _DEBUG
    if line.startswith('User "') and "targeting rule " in line:
        return _DEBUG  # meets / does not meet / bucketed / not bucketed into a rollout rule
    if line.startswith("User '") and "does not meet the conditions for holdout" in line:
        return _DEBUG
    if line.startswith("Rollout ") and line.endswith(" has no experiments."):
        return _DEBUG
    if line.startswith('Variation "') and line.endswith("in the forced variation map"):
        return _DEBUG
    if line == _BUCKETING_ID:
        return _WARNING
    if line.startswith("Failed to fetch CMAB data"):
        return _ERROR
    return _INFO


class LoggedReasons(list[str]):
    """A reasons list whose new lines (``append``) are logged at their official level."""

    __slots__ = ("logger",)

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger

    def append(self, line: str) -> None:
        """Add ``line`` and log it (DEBUG and INFO lines; see the module docstring)."""
        super().append(line)
        level = level_of(line)
        if level < _WARNING and self.logger.isEnabledFor(level):
            self.logger.log(level, line)


def fresh(reasons: list[str]) -> list[str]:
    """An empty list of the same kind as ``reasons`` (logging to the same logger)."""
    if isinstance(reasons, LoggedReasons):
        return LoggedReasons(reasons.logger)
    return []


def reasons_for(logger: logging.Logger, include: bool) -> list[str] | None:
    """The list a decision gathers its reasons in: logged when ``logger`` prints INFO
    (or DEBUG) lines, plain when only ``include`` (``INCLUDE_REASONS``) asks for them,
    ``None`` (no strings built at all) when neither does."""
    if logger.isEnabledFor(_INFO):
        return LoggedReasons(logger)
    return [] if include else None
