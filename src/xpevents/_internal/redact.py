"""Credentials never reach a log line, an error message or ``stats()``.

A spool or upstream URL may carry a password (``redis://:secret@host/0``,
``?password=...``): everything xpevents prints goes through :func:`redact_url` first,
and a message that may quote one from elsewhere (a driver's exception text) through
:func:`redact_text`.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

__all__ = ["redact_text", "redact_url", "secrets_of", "shown_url"]

_HIDDEN: Final = "***"
_SECRET_KEYS: Final = frozenset({"password", "passwd", "pass", "token", "secret", "key"})


def redact_url(url: object) -> str:
    """``url`` with any password or secret query value replaced by ``***``.

    Everything else is left exactly as it was (``sqlite:////abs/path`` keeps its four
    slashes). Text that is not a URL is returned unchanged.
    """
    text = str(url)
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    if "@" in parts.netloc:
        userinfo, _, host = parts.netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        hidden = f"{user}:{_HIDDEN}@{host}" if ":" in userinfo else f"{_HIDDEN}@{host}"
        text = text.replace(parts.netloc, hidden, 1)
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if any(key.lower() in _SECRET_KEYS for key, _ in pairs):
            safe = [(k, _HIDDEN if k.lower() in _SECRET_KEYS else v) for k, v in pairs]
            text = text.replace("?" + parts.query, "?" + urlencode(safe, safe="*"), 1)
    return text


def secrets_of(url: object) -> list[str]:
    """The secrets ``url`` carries: its password (or a lone user name, a token), and
    the values of secret query parameters. Empty for text that is not a URL."""
    try:
        parts = urlsplit(str(url))
        pairs = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return []
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    user, colon, password = userinfo.partition(":")
    found = [password] if colon else [user]
    found += [value for key, value in pairs if key.lower() in _SECRET_KEYS]
    found += [unquote(secret) for secret in found]
    return sorted({secret for secret in found if len(secret) >= 3}, key=len, reverse=True)


def redact_text(text: object, *urls: object) -> str:
    """``text`` with every secret of ``urls`` (see :func:`secrets_of`) replaced by ``***``.

    For messages that quote a URL, or part of one, in a form :func:`redact_url` cannot
    parse (another library's exception, a URL inside a sentence).
    """
    shown = str(text)
    for url in urls:
        shown = shown.replace(str(url), redact_url(url))
        for secret in secrets_of(url):
            shown = shown.replace(secret, _HIDDEN)
    return shown


def shown_url(url: object) -> str:
    """``repr`` of ``url`` with its credentials hidden (``None`` stays ``None``), for reprs."""
    return "None" if url is None else repr(redact_url(url))
