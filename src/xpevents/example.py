"""The example datafile shipped with the package, for trying xpevents without an account."""

from __future__ import annotations

from importlib import resources

__all__ = ["example_datafile"]


def example_datafile() -> str:
    """The realistic example datafile shipped with xpevents, as a JSON string.

    It holds experiments, a mutually exclusive group, feature flags with variables and
    rollouts, and audiences with typed conditions (``xpevents datafile example`` prints
    it; ``xpevents datafile show`` renders it). Your own project's datafile is at
    ``https://cdn.optimizely.com/datafiles/<SDK_KEY>.json``.
    """
    return resources.files("xpevents").joinpath("example_datafile.json").read_text("utf-8")
