"""A misspelt name gets "did you mean ...?": one wording for every "unknown option/key" error.

A URL query option (``?strem=``), a config file key (``upstrem``), a settings key
(``XPEVENTS_FLUSH_TIMOUT``) or a query parameter that xpevents does not know is refused
with :func:`unknown`, which names the closest known name when there is one
(:func:`difflib.get_close_matches`) and then lists what is known::

    unknown option 'strem'; did you mean 'stream'? (known: stream, group, consumer, dead)
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

__all__ = ["closest", "did_you_mean", "unknown"]

_CUTOFF = 0.6
"""difflib's default: 'strem' -> 'stream', 'upstrem' -> 'upstream', 'synch' -> 'sync'."""


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to ``name`` (case-insensitive), or ``None`` if none is close."""
    spelled = {str(k).lower(): str(k) for k in known}
    matches = difflib.get_close_matches(str(name).lower(), spelled, n=1, cutoff=_CUTOFF)
    return spelled[matches[0]] if matches else None


def did_you_mean(names: Sequence[str], known: Iterable[str]) -> str:
    """``"did you mean 'stream'?"`` for the unknown ``names`` (``""`` when none is close).

    With several names each suggestion says which name it is for:
    ``"did you mean 'sync' (for 'synch'), 'busy_timeout' (for 'busytimeout')?"``.
    """
    known = list(known)
    pairs = [(name, match) for name in names if (match := closest(name, known)) is not None]
    if not pairs:
        return ""
    if len(names) == 1:
        return f"did you mean {pairs[0][1]!r}?"
    return "did you mean " + ", ".join(f"{m!r} (for {n!r})" for n, m in pairs) + "?"


def unknown(
    kind: str, names: str | Sequence[str], known: Iterable[str], *, listing: str | None = None
) -> str:
    """``"unknown option 'strem'; did you mean 'stream'? (known: stream, group)"``.

    Args:
        kind: what the name is (``"option"``, ``"key"``); ``s`` is added for several.
        names: the unknown name, or several.
        known: the names that would have been accepted (the suggestion comes from these).
        listing: the text after ``known:`` (default: ``known`` joined by commas), for a
            list too long to print whole or described in words.
    """
    names = [names] if isinstance(names, str) else list(names)
    known = list(known)
    hint = did_you_mean(names, known)
    shown = ", ".join(repr(n) for n in names)
    text = f"unknown {kind}{'s' if len(names) > 1 else ''} {shown}"
    if hint:
        text += f"; {hint}"
    return f"{text} (known: {', '.join(known) if listing is None else listing})"
