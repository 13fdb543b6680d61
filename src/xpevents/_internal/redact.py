"""Credentials never reach a log line, an error message or ``stats()``.

A spool or upstream URL may carry a password (``redis://:secret@host/0``,
``?password=...``): everything xpevents prints goes through :func:`redact_url` first.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = ["redact_url"]

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
