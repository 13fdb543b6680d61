"""examples/php: RelayEventDispatcher delivers through the relay, and directly when it is down."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from test_relay import FAST, wait_for_uuids
from xpevents.relay.testing import run_relay
from xpevents.testing import CollectorHandle

from servers import Reply, scripted_server

PHP = shutil.which("php")
SCRIPT = Path(__file__).parent.parent / "examples" / "php" / "dispatch_events.php"

pytestmark = pytest.mark.skipif(PHP is None, reason="php is not installed (CI installs php-cli)")


def run_php(*args: str) -> dict[str, Any]:
    assert PHP is not None
    done = subprocess.run(
        [PHP, str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    result["stderr"] = done.stderr
    return result


def uuids(result: dict[str, Any], outcome: str) -> set[str]:
    return {e["uuid"] for e in result["events"] if e["outcome"] == outcome}


def test_php_has_curl() -> None:
    assert PHP is not None
    modules = subprocess.run([PHP, "-m"], capture_output=True, text=True, check=True).stdout
    assert "curl" in modules.split(), "install php-curl"


def test_php_dispatcher_through_the_relay_then_directly_when_it_is_down(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    with run_relay(
        spool=f"sqlite:///{tmp_path}/r.db",
        upstream=collector.events_url,
        upstream_eu=collector.eu_events_url,
        token="tok",
        **FAST,
    ) as relay:
        through = run_php(
            f"--relay={relay.base_url}",
            f"--original={collector.events_url}",
            "--count=40",
            "--token=tok",
            "--timeout-ms=2000",  # a loaded CI machine; the default is 100 ms
        )
        assert through["outcomes"] == {"relay": 40}
        assert not wait_for_uuids(collector, uuids(through, "relay"), timeout=20)
        # A wrong token is a configuration error: logged, events keep flowing directly.
        wrong = run_php(
            f"--relay={relay.base_url}",
            f"--original={collector.events_url}",
            "--count=3",
            "--token=nope",
            "--timeout-ms=2000",
        )
        assert wrong["outcomes"] == {"fallback": 3}
        assert "HTTP 401" in wrong["stderr"]
    # The relay is gone: its port refuses connections, the original URL takes the events.
    down = run_php(f"--relay={relay.base_url}", f"--original={collector.events_url}", "--count=25")
    assert down["outcomes"] == {"fallback": 25}
    assert "relay unreachable" in down["stderr"]
    expected = uuids(through, "relay") | uuids(wrong, "fallback") | uuids(down, "fallback")
    assert len(expected) == 68
    assert not wait_for_uuids(collector, expected, timeout=20)
    assert collector.stats()["unique_events"] == 68


@pytest.mark.parametrize("status", [503, 500, 429, 404, 400, 413, 415, 422])
def test_php_dispatcher_falls_back_on_every_relay_refusal_and_logs_why(
    collector: CollectorHandle, status: int
) -> None:
    refusal = {
        "error": "invalid event payload at $.visitors[0]",
        "reason": "r",
        "path": "$.visitors[0]",
    }
    with scripted_server() as fake_relay:
        fake_relay.default = Reply(
            status=status, headers={"Retry-After": "1"}, body=json.dumps(refusal).encode()
        )
        result = run_php(
            f"--relay={fake_relay.base_url}", f"--original={collector.events_url}", "--count=2"
        )
    assert result["outcomes"] == {"fallback": 2}
    assert f"relay answered HTTP {status} r at $.visitors[0]: invalid event" in result["stderr"]
    assert collector.stats()["unique_events"] == 2


def test_php_dispatcher_falls_back_to_the_configured_url_never_the_events_own(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    # The events are built for a closed loopback port: a fallback that went there
    # (where production's URL would be) would fail; they must reach --fallback.
    nowhere = "http://127.0.0.1:9/v1/events"
    fallback = [f"--original={nowhere}", f"--fallback={collector.base_url}", "--timeout-ms=300"]
    with run_relay(
        spool=f"sqlite:///{tmp_path}/r.db",
        upstream=collector.events_url,
        upstream_eu=collector.eu_events_url,
        max_body=300,  # every event is refused: 413 too_large
        **FAST,
    ) as relay:
        refused = run_php(f"--relay={relay.base_url}", "--count=3", *fallback)
        assert refused["outcomes"] == {"fallback": 3}
        assert "relay answered HTTP 413 too_large" in refused["stderr"]
        os.kill(relay.pid, signal.SIGSTOP)  # hung: it accepts connections, never answers
        try:
            hung = run_php(f"--relay={relay.base_url}", "--count=3", *fallback)
        finally:
            os.kill(relay.pid, signal.SIGCONT)
        assert hung["outcomes"] == {"fallback": 3}
        assert "relay unreachable" in hung["stderr"] and "timed out" in hung["stderr"].lower()
    down = run_php(f"--relay={relay.base_url}", "--count=3", *fallback)
    assert down["outcomes"] == {"fallback": 3}
    assert "relay unreachable" in down["stderr"]
    expected = uuids(refused, "fallback") | uuids(hung, "fallback") | uuids(down, "fallback")
    assert not wait_for_uuids(collector, expected, timeout=20)
    none = run_php(
        f"--relay={relay.base_url}", "--count=1", f"--original={nowhere}", "--fallback=none"
    )
    assert none["outcomes"] == {"dropped": 1}
    assert "no fallback_url" in none["stderr"]


def test_php_4x_eu_project_uses_the_relays_eu_path(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    # PHP SDK 4.x builds every event for the US URL; an EU project points the
    # dispatcher at the relay's /eu/v1/events path, which forwards to --upstream-eu.
    with run_relay(
        spool=f"sqlite:///{tmp_path}/eu.db",
        upstream=collector.events_url,
        upstream_eu=collector.eu_events_url,
        **FAST,
    ) as relay:
        result = run_php(
            f"--relay={relay.base_url}/eu/v1/events",
            "--original=https://logx.optimizely.com/v1/events",
            "--fallback=none",
            "--count=4",
            "--timeout-ms=2000",
        )
        assert result["outcomes"] == {"relay": 4}
        assert not wait_for_uuids(collector, uuids(result, "relay"), timeout=20)
    assert collector.stats()["requests_by_region"]["eu"] >= 1
    assert collector.stats()["requests_by_region"]["us"] == 0


def test_php_dispatcher_maps_eu_events_to_the_eu_path() -> None:
    with scripted_server() as fake_relay:
        result = run_php(
            f"--relay={fake_relay.base_url}",
            "--original=https://eu.logx.optimizely.com/v1/events",
            "--count=1",
        )
        assert result["outcomes"] == {"relay": 1}
        assert fake_relay.received[0].path == "/eu/v1/events"
