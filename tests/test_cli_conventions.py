"""Every command: XPEVENTS_<COMMAND>_<OPTION> variables, listed in --help, and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest


def _xpevents(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xpevents", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("command", ["collector", "relay", "demo", "decide"])
def test_help_lists_the_environment_variable_of_each_option(command: str) -> None:
    out = _xpevents(command, "--help").stdout
    assert f"XPEVENTS_{command.upper()}_" in out.replace("\n", " ").replace("  ", " ")


def test_a_bad_value_from_the_environment_names_the_variable() -> None:
    result = _xpevents("collector", env={"XPEVENTS_COLLECTOR_PORT": "abc"})
    assert result.returncode == 2
    assert "XPEVENTS_COLLECTOR_PORT" in result.stderr and "Traceback" not in result.stderr


def test_the_collector_reads_its_port_from_the_environment() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "xpevents", "collector"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "XPEVENTS_COLLECTOR_PORT": "0"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line and ":8788" not in line
        url = line.split("listening on ")[1].strip()
        assert httpx.get(url + "/healthz", trust_env=False).status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)


def test_no_traceback_reaches_a_cli_user() -> None:
    for args in (
        ["spool", "stats", "redis://127.0.0.1:6379/15?strem=x"],
        ["spool", "stats", "sqlite:/relative.db"],
        ["datafile", "show", "/nonexistent/file.json"],
    ):
        result = _xpevents(*args)
        assert result.returncode != 0, args
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert result.stderr.strip().splitlines()[-1].startswith("Error:"), result.stderr


def test_spool_url_mistakes_get_one_good_message_everywhere() -> None:
    import redis

    from xpevents import BatchDispatcher, ConfigError

    for url, message in (
        ("sqlite:/relative.db", "three or four slashes"),
        ("sqlite://relative.db", "three or four slashes"),
        ("redis://127.0.0.1:6379/15?strem=x", "unknown option 'strem'; did you mean 'stream'?"),
    ):
        with pytest.raises(ConfigError, match=message):
            BatchDispatcher(spool=url)
        for command in (["spool", "stats", url], ["relay", "--port", "0", "--spool", url]):
            result = _xpevents(*command)
            assert result.returncode != 0 and message in result.stderr, (command, result.stderr)
            assert "Traceback" not in result.stderr and "pathlib" not in result.stderr
    assert (
        "memory:// spools live inside one process"
        in _xpevents("spool", "stats", "memory://").stderr
    )
    db = redis.Redis(host="127.0.0.1", port=6379, db=14)
    db.delete("xpevents-inspect-only", "xpevents-inspect-only:meta")
    result = _xpevents("spool", "stats", "redis://127.0.0.1:6379/14?stream=xpevents-inspect-only")
    assert "does not exist" in result.stderr
    assert not db.exists("xpevents-inspect-only", "xpevents-inspect-only:meta")  # nothing written


def test_a_busy_port_fails_before_the_relay_creates_its_spool(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        spool = tmp_path / "relay.db"
        result = _xpevents("relay", "--port", str(port), "--spool", f"sqlite:///{spool}")
    assert result.returncode == 1 and "Address already in use" in result.stderr
    assert "0 picks a free one" in result.stderr
    assert not spool.exists()  # nothing created
