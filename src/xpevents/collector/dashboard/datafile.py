"""Loading the ``--datafile`` of ``xpevents collector``."""

from __future__ import annotations

from pathlib import Path

import click

from xpevents.decide.datafile import ProjectConfig, load_config
from xpevents.errors import DatafileError

__all__ = ["load_datafile"]


def load_datafile(path: Path | None) -> ProjectConfig | None:
    """The datafile at ``path`` (``None`` for none); a bad one is a usage error naming it."""
    if path is None:
        return None
    try:
        return load_config(path.read_bytes())
    except (OSError, DatafileError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--datafile") from None
