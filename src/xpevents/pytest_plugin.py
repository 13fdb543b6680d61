"""The pytest plugin behind ``xpevents.testing``: ``collector`` and ``collector_factory``.

Registered through the ``pytest11`` entry point, so any project that installs xpevents
gets both fixtures; :mod:`xpevents.testing` itself does not import pytest, so the
``run_collector`` context manager also works in scripts and benchmarks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from xpevents.testing import CollectorHandle, run_collector

__all__ = ["collector", "collector_factory"]


@pytest.fixture
def collector() -> Iterator[CollectorHandle]:
    """A fresh collector (default settings) for one test; yields its handle."""
    with run_collector() as handle:
        yield handle


@pytest.fixture
def collector_factory() -> Iterator[Callable[..., CollectorHandle]]:
    """A function that starts collectors with given options, stopped after the test.

    ``collector_factory(fail_rate=0.2, seed=7)`` returns a :class:`CollectorHandle`.
    """
    with contextlib.ExitStack() as stack:

        def start(**options: Any) -> CollectorHandle:
            return stack.enter_context(run_collector(**options))

        yield start
