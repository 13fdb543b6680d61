"""What a file path that cannot be opened lacks, worded once for every file xpevents opens.

SQLite says only "unable to open database file" when the directory is missing; the
SQLite spool (``sqlite:///...``) and the collector's ``--db`` both check first with
:func:`missing_directory`, so both say which directory is missing and what to do.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["missing_directory"]


def missing_directory(path: str | Path) -> str | None:
    """``"directory '/no/dir' does not exist; create it or choose another path"`` when the
    directory that would hold ``path`` is missing (or is not a directory), else ``None``."""
    directory = Path(path).parent
    if directory.is_dir():
        return None
    return f"directory {str(directory)!r} does not exist; create it or choose another path"
