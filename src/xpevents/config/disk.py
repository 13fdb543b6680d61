"""The last good datafile on disk (``datafile_cache=PATH``).

A process that restarts while the CDN is unreachable decides with the last datafile it
had instead of nothing. The file is written atomically (a temporary file in the same
directory, fsync, rename), mode 0600, and only with a datafile that passed validation;
a corrupt or unreadable cache at start is ignored with one warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

__all__ = ["read_cache", "write_cache"]

logger = logging.getLogger("xpevents.config")


def read_cache(path: Path) -> bytes | None:
    """The cached datafile, or ``None`` (no file yet, or unreadable: logged)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning("datafile cache %s cannot be read (%s); starting without it", path, exc)
        return None


def write_cache(path: Path, datafile: bytes) -> None:
    """Replace the cache with ``datafile`` atomically; a failure is logged, never raised."""
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        logger.warning("datafile cache %s cannot be written (%s)", path, exc)
        return
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(datafile)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        logger.warning("datafile cache %s cannot be written (%s)", path, exc)
        with contextlib.suppress(OSError):
            os.unlink(temporary)
