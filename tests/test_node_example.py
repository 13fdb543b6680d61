"""examples/node: the real Optimizely Node SDK sends its events through the relay."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_relay import FAST, wait_for_uuids
from xpevents.relay.testing import run_relay
from xpevents.testing import CollectorHandle

NODE = shutil.which("node")
NPM = shutil.which("npm")
EXAMPLE = Path(__file__).parent.parent / "examples" / "node"
FILES = ("package.json", "package-lock.json", "relay_dispatcher.js", "run.js")
NPM_TIMEOUT = 180

pytestmark = pytest.mark.skipif(
    NODE is None or NPM is None, reason="node/npm are not installed (CI installs nodejs npm)"
)


def npm_env() -> dict[str, str]:
    # The suite points proxy variables at a dead port so nothing escapes; npm alone
    # needs the registry (its own .npmrc proxy settings still apply). Cache: ~/.npm.
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    return {k: v for k, v in os.environ.items() if k.lower() not in proxies}


@pytest.fixture(scope="module")
def node_example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of examples/node with its dependencies installed (npm ci, bounded)."""
    assert NPM is not None
    work = tmp_path_factory.mktemp("node-example")
    for name in FILES:
        shutil.copy(EXAMPLE / name, work / name)
    try:
        done = subprocess.run(
            [NPM, "ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"],
            cwd=work,
            env=npm_env(),
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"npm ci took more than {NPM_TIMEOUT}s")
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    yield work


def test_lockfile_pins_the_sdk_version(node_example: Path) -> None:
    wanted = json.loads((EXAMPLE / "package.json").read_text())["dependencies"]
    installed = json.loads(
        (node_example / "node_modules/@optimizely/optimizely-sdk/package.json").read_text()
    )
    assert installed["version"] == wanted["@optimizely/optimizely-sdk"]


def test_node_sdk_events_reach_the_collector_through_the_relay(
    node_example: Path, collector: CollectorHandle, datafile_path: Path, tmp_path: Path
) -> None:
    assert NODE is not None
    with run_relay(
        spool=f"sqlite:///{tmp_path}/r.db",
        upstream=collector.events_url,
        upstream_eu=collector.eu_events_url,
        token="node-tok",
        **FAST,
    ) as relay:
        done = subprocess.run(
            [
                NODE,
                "run.js",
                "--datafile",
                str(datafile_path),
                "--relay",
                relay.base_url,
                "--users",
                "60",
                "--token",
                "node-tok",
            ],
            cwd=node_example,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        assert summary["shown"] == 60
        assert summary["statuses"] == {"204": 120}
        accepted = set(summary["accepted"])
        assert len(accepted) == 120
        assert not wait_for_uuids(collector, accepted, timeout=20)
    stats = collector.stats()
    assert stats["unique_events"] == 120
    assert stats["conversions"] == {"purchase": 60}
    assert sum(stats["revenue"].values()) == sum(1000 + i for i in range(60))


def test_node_dispatcher_refuses_a_remote_relay(node_example: Path) -> None:
    assert NODE is not None
    script = (
        "const {createRelayDispatcher} = require('./relay_dispatcher');"
        "try { createRelayDispatcher({relayUrl: 'https://logx.optimizely.com'}); "
        "process.exit(3); } catch (e) { console.log(e.message); }"
    )
    done = subprocess.run(
        [NODE, "-e", script], cwd=node_example, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0
    assert "not on loopback" in done.stdout
