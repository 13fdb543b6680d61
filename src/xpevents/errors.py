"""The xpevents exception hierarchy: everything xpevents raises on purpose.

::

    XpeventsError
    ├── ConfigError (also ValueError)        a constructor or function argument is invalid
    ├── DatafileError (also ValueError)      a datafile cannot be decoded or is unusable
    ├── InvalidInputError (also ValueError)  a client call's argument (Client(strict=True))
    │   └── UnknownKeyError                  an experiment/flag/event key not in the datafile
    ├── PayloadError (also ValueError)       an event payload is not serialisable or invalid
    │   └── PayloadSchemaError               not an event API payload (names the JSON path)
    ├── DispatchError                        an event could not be delivered
    ├── SpoolError                           a spool cannot be opened or used
    ├── SpoolFull                            the relay's spool admits nothing more for now
    └── BodyRejected                         a service refuses a request body (status + why)

Messages say what was wrong, where, and what to do about it. The ``ValueError`` bases
keep code that guards input with ``except ValueError`` working.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BodyRejected",
    "ConfigError",
    "DatafileError",
    "DispatchError",
    "InvalidInputError",
    "PayloadError",
    "PayloadSchemaError",
    "SpoolError",
    "SpoolFull",
    "UnknownKeyError",
    "XpeventsError",
]


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


class InvalidInputError(XpeventsError, ValueError):
    """An argument of a client call is invalid (raised only with ``Client(strict=True)``).

    Without ``strict`` the client logs the same message and returns ``None``, ``False``
    or a disabled :class:`~xpevents.Decision`, as the official SDK does.
    """


class UnknownKeyError(InvalidInputError):
    """An experiment, flag, variable or event key is not in the datafile (``strict=True`` only)."""


class PayloadError(XpeventsError, ValueError):
    """An event payload is invalid (not serialisable, or not in the event API format)."""


class PayloadSchemaError(PayloadError):
    """A body is not valid JSON or not a valid event API payload.

    Attributes:
        path: JSON path of the first error (``"$"`` for the document itself, e.g.
            malformed JSON), such as ``"$.visitors[0].snapshots[0].events[0].uuid"``.
        detail: what was wrong there, e.g. ``"Expected `int`, got `str`"``.
        reason: a short machine-readable reason for counters (``"not_json"``,
            ``"too_deep"``, ``"no_visitors"``, ``"invalid_payload"``...).
    """

    def __init__(self, detail: str, path: str = "$", reason: str = "invalid_payload") -> None:
        super().__init__(f"invalid event payload at {path}: {detail}")
        self.path = path
        self.detail = detail
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (PayloadSchemaError, (self.detail, self.path, self.reason))


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


class SpoolFull(XpeventsError):
    """The spool holds as much as the relay may admit; the client should retry later."""


class BodyRejected(XpeventsError):
    """A service refuses a request with ``status`` and ``{"error": ..., "path": ...}``.

    Attributes:
        status: the HTTP status to answer (400, 408, 413, 415...).
        error: what was wrong and how to fix it.
        path: the JSON path of the first error in the payload, when there is one.
        reason: a short machine-readable reason for counters (``"too_large"``,
            ``"invalid_gzip"``, ``"read_timeout"``...; default ``"invalid_body"``).
    """

    def __init__(
        self, status: int, error: str, path: str | None = None, reason: str = "invalid_body"
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (BodyRejected, (self.status, self.error, self.path, self.reason))

    def body(self) -> dict[str, Any]:
        """The JSON error body: ``error``, ``reason`` and ``path`` (when one is known)."""
        data: dict[str, Any] = {"error": self.error, "reason": self.reason}
        if self.path is not None:
            data["path"] = self.path
        return data
