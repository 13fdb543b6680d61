"""Suite-wide guards.

Nothing in the tests may ever leave the machine: every HTTP client that honours the
proxy environment variables is pointed at a dead loopback port, with loopback itself
exempted, so a request that escaped its local collector fails fast instead of reaching
the real events endpoint.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def _dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()  # nothing listens there any more: connections are refused at once
    return port


_DEAD_PROXY = f"http://127.0.0.1:{_dead_port()}"
for _name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ[_name] = _DEAD_PROXY
for _name in ("NO_PROXY", "no_proxy"):
    os.environ[_name] = "127.0.0.1,localhost,::1"


@pytest.fixture(scope="session")
def dead_proxy() -> str:
    """The proxy every non-loopback request is sent to (and refused by)."""
    return _DEAD_PROXY


@pytest.fixture(scope="session")
def datafile_path() -> Path:
    return FIXTURES / "datafile.json"


@pytest.fixture(scope="session")
def datafile_text(datafile_path: Path) -> str:
    return datafile_path.read_text()


@pytest.fixture
def no_network_escape() -> Iterator[None]:
    """Assert explicitly that the proxy guard is in place (used by the guard's own test)."""
    assert os.environ["HTTPS_PROXY"] == _DEAD_PROXY
    yield
