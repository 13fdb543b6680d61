"""The pytest plugin behind ``xpevents.testing``: the ``xpevents_collector`` and
``xpevents_collector_factory`` fixtures (also named ``collector`` and ``collector_factory``).

Registered through the ``pytest11`` entry point, so any project that installs xpevents
gets them; :mod:`xpevents.testing` itself does not import pytest, so the
``run_collector`` context manager also works in scripts and benchmarks.

A fixture of your own named ``collector`` or ``collector_factory`` (in a conftest.py or a
test module) takes precedence over the plugin's short names, as pytest gives every
conftest fixture precedence over a plugin's; the prefixed names stay available. Turn the
plugin off with ``-p no:xpevents``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from xpevents.testing import CollectorHandle, run_collector

__all__ = ["collector", "collector_factory", "xpevents_collector", "xpevents_collector_factory"]


@contextlib.contextmanager
def _one() -> Iterator[CollectorHandle]:
    with run_collector() as handle:
        yield handle


@contextlib.contextmanager
def _factory() -> Iterator[Callable[..., CollectorHandle]]:
    with contextlib.ExitStack() as stack:

        def start(**options: Any) -> CollectorHandle:
            return stack.enter_context(run_collector(**options))

        yield start


@pytest.fixture
def xpevents_collector() -> Iterator[CollectorHandle]:
    """A fresh collector (default settings) for one test; yields its handle."""
    with _one() as handle:
        yield handle


@pytest.fixture
def xpevents_collector_factory() -> Iterator[Callable[..., CollectorHandle]]:
    """A function that starts collectors with given options, stopped after the test.

    ``xpevents_collector_factory(fail_rate=0.2, seed=7)`` returns a
    :class:`CollectorHandle`.
    """
    with _factory() as start:
        yield start


@pytest.fixture
def collector() -> Iterator[CollectorHandle]:
    """``xpevents_collector`` under its short name (a fixture of yours wins over it)."""
    with _one() as handle:
        yield handle


@pytest.fixture
def collector_factory() -> Iterator[Callable[..., CollectorHandle]]:
    """``xpevents_collector_factory`` under its short name (yours wins over it)."""
    with _factory() as start:
        yield start
