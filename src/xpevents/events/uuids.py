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
forks that bypass Python's hooks, every call compares the process id with the one the
generator was seeded in.
"""

from __future__ import annotations

import os
import random
import threading
from typing import Final

from xpevents._internal import forking

__all__ = ["uuid4_hex", "uuid4_str"]

_VERSION_MASK: Final = ~(0xF000 << 64) & ~(0xC000 << 48) & ((1 << 128) - 1)
_VERSION_BITS: Final = (0x4000 << 64) | (0x8000 << 48)

_rng = random.Random()
_pid = -1
_seed_lock = threading.Lock()


def _reseed() -> None:
    """Seed the private generator from the OS entropy pool and remember our pid."""
    global _pid
    _rng.seed(int.from_bytes(os.urandom(32), "big"))
    _pid = os.getpid()


_reseed()
forking.at_fork(_reseed, forking.Stage.IDS)


def uuid4_str() -> str:
    """Return a new random uuid as a lowercase RFC 4122 version-4 string.

    Example: ``'1b4e28ba-2fa1-41d2-883f-0016d3cca427'``. Thread-safe (the generator's
    ``getrandbits`` runs under the GIL) and never repeated across forked workers.
    """
    if _pid != os.getpid():
        with _seed_lock:
            if _pid != os.getpid():
                _reseed()
    h = "%032x" % ((_rng.getrandbits(128) & _VERSION_MASK) | _VERSION_BITS)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid4_hex() -> str:
    """Return a new random version-4 uuid as 32 lowercase hex digits (no dashes)."""
    if _pid != os.getpid():
        with _seed_lock:
            if _pid != os.getpid():
                _reseed()
    return "%032x" % ((_rng.getrandbits(128) & _VERSION_MASK) | _VERSION_BITS)
