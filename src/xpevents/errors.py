"""The xpevents exception hierarchy.

Every exception raised on purpose by xpevents derives from :class:`XpeventsError`.
Messages say what was wrong, where, and what to do about it.
"""

from __future__ import annotations


class XpeventsError(Exception):
    """Root of every exception xpevents raises on purpose."""


class ConfigError(XpeventsError, ValueError):
    """A constructor or function argument is invalid.

    The message names the argument, the value received and the fix. It is also a
    :class:`ValueError`, so code that guards configuration with ``except ValueError``
    keeps working.
    """


class DatafileError(XpeventsError, ValueError):
    """The datafile could not be decoded; the message names the JSON path of the problem."""


class PayloadError(XpeventsError, ValueError):
    """An event payload is invalid (not serialisable, or not in the event API format)."""


class DispatchError(XpeventsError):
    """An event could not be delivered.

    Raised only when a dispatcher is created with ``raise_on_failure=True``; otherwise
    the same object is handed to ``on_failure`` callbacks and counted in ``stats()``.

    Attributes:
        reason: a short machine-readable reason (``"http_400"``, ``"timeout"``,
            ``"network"``, ``"http_503"``, ``"serialize"``, ...).
        url: the URL the event was sent to.
        status: the HTTP status of the last answer, or ``None`` when there was none.
        response_excerpt: the first 500 characters of the last response body.
        attempts: how many requests were made.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        url: str | None = None,
        status: int | None = None,
        response_excerpt: str = "",
        attempts: int = 0,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.url = url
        self.status = status
        self.response_excerpt = response_excerpt
        self.attempts = attempts

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_dispatch_error,
            (str(self), self.reason, self.url, self.status, self.response_excerpt, self.attempts),
        )


def _rebuild_dispatch_error(
    message: str,
    reason: str,
    url: str | None,
    status: int | None,
    response_excerpt: str,
    attempts: int,
) -> DispatchError:
    return DispatchError(
        message,
        reason=reason,
        url=url,
        status=status,
        response_excerpt=response_excerpt,
        attempts=attempts,
    )


class SpoolError(XpeventsError):
    """A spool (the durable queue behind a dispatcher) cannot be opened or used."""
