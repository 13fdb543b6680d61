"""Cheap, fork-safe, RFC 4122 version-4 uuid strings for event payloads.

``str(uuid.uuid4())`` costs about 2.5 µs (an ``os.urandom`` syscall plus the ``UUID``
object); an event payload needs only the 36-character string, and the event API uses it
with the timestamp to de-duplicate. :func:`uuid4_hex` draws 128 bits from a private
:class:`random.Random` (Mersenne Twister, seeded with 32 bytes of ``os.urandom``), sets
the version and variant bits and formats the string: well under a microsecond.

These uuids are unique, not secret: do not use them as tokens.

Fork safety: a PRNG state copied by ``fork()`` would make every worker of a pre-forking
server (gunicorn, uwsgi, multiprocessing) emit the *same* sequence, and the event API
would then de-duplicate real events away. The generator is therefore reseeded in the
child by an ``os.register_at_fork(after_in_child=...)`` hook, and, as a second guard for
forks that bypass Python's hooks, every call reads a fork mark
(:func:`xpevents._internal.forking.new_fork_mark`: a page the kernel zeroes in a child,
or a process-id comparison where there is no such page).
"""

from __future__ import annotations

import os
import random
import threading
from typing import Final

from xpevents._internal import forking

__all__ = ["uuid4_bytes", "uuid4_hex", "uuid4_parts", "uuid4_str"]

_VERSION_MASK: Final = ~(0xF000 << 64) & ~(0xC000 << 48) & ((1 << 128) - 1)
_VERSION_BITS: Final = (0x4000 << 64) | (0x8000 << 48)

_rng = random.Random()
_mark = forking.new_fork_mark()
"""``_mark[0]`` is 0 once this process was forked and not yet reseeded."""
_seed_lock = threading.Lock()


_PREFIX_USES: Final = 65_536
"""Events that share one drawn 60-bit prefix in :func:`uuid4_bytes`."""
_LOW_BITS: Final = (1 << 48) - 1
_prefix = b""
_prefix_left = 0
_draw = _rng.getrandbits


def _reseed() -> None:
    """Seed the private generator from the OS entropy pool and arm the fork mark."""
    global _prefix_left
    _rng.seed(int.from_bytes(os.urandom(32), "big"))
    _mark[0] = 1
    _prefix_left = 0  # a forked child draws its own prefix too


_reseed()
forking.at_fork(_reseed, forking.Stage.IDS)


def uuid4_str() -> str:
    """Return a new random uuid as a lowercase RFC 4122 version-4 string.

    Example: ``'1b4e28ba-2fa1-41d2-883f-0016d3cca427'``. Thread-safe (the generator's
    ``getrandbits`` runs under the GIL) and never repeated across forked workers.
    """
    if not _mark[0]:
        with _seed_lock:
            if not _mark[0]:
                _reseed()
    h = "%032x" % ((_rng.getrandbits(128) & _VERSION_MASK) | _VERSION_BITS)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid4_hex() -> str:
    """Return a new random version-4 uuid as 32 lowercase hex digits (no dashes)."""
    if not _mark[0]:
        with _seed_lock:
            if not _mark[0]:
                _reseed()
    return "%032x" % ((_rng.getrandbits(128) & _VERSION_MASK) | _VERSION_BITS)


def _new_prefix() -> bytes:
    global _prefix, _prefix_left
    if not _mark[0]:  # forked without Python's hooks: reset everything now
        forking.reset_if_forked()
        with _seed_lock:
            if not _mark[0]:
                _reseed()
    n = _draw(60)
    _prefix = b"%08x-%04x-4%03x-" % (n >> 28, (n >> 12) & 0xFFFF, n & 0xFFF)
    _prefix_left = _PREFIX_USES
    return _prefix


def uuid4_parts() -> tuple[bytes, int]:
    """The two parts of a new version-4 uuid: ``prefix`` and 62 random ``bits``.

    ``b"%b%04x-%012x" % (prefix, 0x8000 | (bits >> 48), bits & (2**48 - 1))`` is the
    uuid (what :func:`uuid4_bytes` returns); a payload writer puts the parts straight
    into its own template. The layout and the 122 random bits are RFC 4122 version
    4's; to make the hot path cheap, the prefix's 60 random bits are drawn once per
    65,536 uuids (and again after a fork) and the last 62 for every uuid. Unique, like
    :func:`uuid4_str`, not secret. Thread-safe under the GIL: two threads racing on a
    prefix change may share one prefix a few times more, and still draw their last
    62 bits apart.

    The fork mark is read on every call: a process forked without Python's at-fork
    hooks is caught here, and :func:`xpevents._internal.forking.reset_if_forked`
    then resets every registered object (dispatchers included) before the event
    that noticed it goes anywhere.
    """
    global _prefix_left
    _prefix_left -= 1
    prefix = _prefix if _prefix_left > 0 and _mark[0] else _new_prefix()
    return prefix, _draw(62)


def uuid4_bytes() -> bytes:
    """A new version-4 uuid as 36 ASCII bytes (see :func:`uuid4_parts`)."""
    prefix, n = uuid4_parts()
    return b"%b%04x-%012x" % (prefix, 0x8000 | (n >> 48), n & _LOW_BITS)
