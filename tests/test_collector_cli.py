"""``xpevents collector`` as a command: options, start line, signals, --db."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from xpevents.cli import main
from xpevents.collector.app import Collector
from xpevents.collector.cli import collector_command
from xpevents.errors import ConfigError
from xpevents.testing import run_collector

PAYLOAD = {
    "account_id": "1",
    "visitors": [
        {
            "visitor_id": "u1",
            "snapshots": [
                {"events": [{"entity_id": "e", "uuid": "u", "key": "k", "timestamp": 1}]}
            ],
        }
    ],
}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--fail-rate", "1.5"], "--fail-rate"),
        (["--rate-429", "-0.1"], "--rate-429"),
        (["--drop-rate", "x"], "--drop-rate"),
        (["--latency-ms", "-1"], "--latency-ms"),
        (["--retry-after", "-1"], "--retry-after"),
        (["--max-body", "0"], "--max-body"),
        (["--port", "70000"], "--port"),
        (["--seed", "abc"], "--seed"),
        (["--fail-rate", "0.6", "--drop-rate", "0.6"], "at most 1"),
    ],
)
def test_invalid_options_are_usage_errors(args: list[str], needle: str) -> None:
    result = CliRunner().invoke(collector_command, args)
    assert result.exit_code == 2, result.output
    assert needle in result.output


def test_unopenable_db_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "no" / "such.db"
    result = CliRunner().invoke(collector_command, ["--db", str(db)])
    assert result.exit_code == 1
    assert (
        f"cannot open --db {db}: directory '{db.parent}' does not exist; create it or choose "
        "another path"
    ) in " ".join(result.output.split())
    assert "unable to open database file" not in result.output
    with pytest.raises(ConfigError, match=r"directory .* does not exist; create it"):
        Collector(db=db)  # the Python API says the same


def test_help_lists_every_option() -> None:
    result = CliRunner().invoke(main, ["collector", "--help"])
    assert result.exit_code == 0
    for option in (
        "--host",
        "--port",
        "--db",
        "--max-body",
        "--latency-ms",
        "--fail-rate",
        "--rate-429",
        "--retry-after",
        "--drop-rate",
        "--seed",
    ):
        assert option in result.output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_prints_one_line_and_exits_cleanly_on_signal(sig: signal.Signals) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "xpevents", "collector", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"xpevents collector listening on (http://127\.0\.0\.1:(\d+))\n", line)
        assert match, line
        assert int(match.group(2)) > 0
        with httpx.Client(trust_env=False) as http:
            assert http.post(match.group(1) + "/v1/events", json=PAYLOAD).status_code == 204
        process.send_signal(sig)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert stdout == ""
    assert "Traceback" not in stderr


def test_options_reach_the_server(tmp_path: Path) -> None:
    options = {
        "latency_ms": 5.0,
        "fail_rate": 0.1,
        "rate_429": 0.2,
        "retry_after": 3,
        "drop_rate": 0.3,
        "html_rate": 0.1,
        "seed": 7,
    }
    with run_collector(max_body=1000, **options) as collector:
        assert collector.control() == options
        collector.control(latency_ms=0, fail_rate=0, rate_429=0, drop_rate=0, html_rate=0)
        with httpx.Client(trust_env=False) as http:
            big = json.dumps(PAYLOAD | {"padding": "x" * 1000})
            assert http.post(collector.events_url, content=big).status_code == 413
            assert http.post(collector.eu_events_url, json=PAYLOAD).status_code == 204
        assert collector.stats()["requests_by_region"] == {"us": 1, "eu": 1}


def test_db_file_persists_events_and_dedup_across_restarts(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with run_collector(db=db) as collector, httpx.Client(trust_env=False) as http:
        assert http.post(collector.events_url, json=PAYLOAD).status_code == 204
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT uuid, visitor_id FROM events").fetchall() == [("u", "u1")]
    with run_collector(db=db) as collector, httpx.Client(trust_env=False) as http:
        assert [e["uuid"] for e in collector.events()] == ["u"]
        assert http.post(collector.events_url, json=PAYLOAD).status_code == 204
        stats = collector.stats()
        assert (stats["unique_events"], stats["duplicates"]) == (0, 1)
        collector.reset()
        assert collector.events() == []


def test_one_line_per_request_and_refusals_at_the_default_level() -> None:
    import os
    import subprocess
    import sys

    import httpx

    for level, expect_info in (("info", True), ("warning", False)):
        proc = subprocess.Popen(
            [sys.executable, "-m", "xpevents", "collector", "--port", "0", "--log-level", level],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ},
        )
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().split("listening on ")[1].strip()
            good = {
                "account_id": "1",
                "client_name": "python-sdk",
                "client_version": "5.7.0",
                "visitors": [
                    {
                        "visitor_id": "u1",
                        "attributes": [],
                        "snapshots": [
                            {
                                "events": [
                                    {"key": "k", "timestamp": 1, "uuid": "a", "entity_id": "1"}
                                ]
                            }
                        ],
                    }
                ],
            }
            assert httpx.post(url + "/v1/events", json=good, trust_env=False).status_code == 204
            assert (
                httpx.post(url + "/v1/events", content=b"nope", trust_env=False).status_code == 400
            )
        finally:
            proc.terminate()
            _, stderr = proc.communicate(timeout=10)
        assert "400 POST /v1/events refused" in stderr
        assert ("204 /us 1 visitor(s), 1 event(s) (1 new) client=python-sdk/5.7.0" in stderr) is (
            expect_info
        )


def test_a_service_command_freezes_its_startup_objects_once_listening() -> None:
    """``xpevents relay`` / ``collector`` (serving.command.serve) and the relay's
    forwarding child move what startup built out of the collector's generations: a full
    collection under load then walks only what serving allocated (a 10-30 ms pause
    before, issue 16 eighth pass). Run in a subprocess: freezing is the process's own."""
    code = (
        "import gc\n"
        "from xpevents.serving import command\n"
        "class Server:\n"
        "    url = 'http://127.0.0.1:9'\n"
        "    def run(self, on_started):\n"
        "        before = gc.get_freeze_count()\n"
        "        on_started()\n"
        "        print(before, gc.get_freeze_count())\n"
        "command.serve(Server(), 'collector')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    listening, counts = done.stdout.splitlines()
    assert listening.endswith("http://127.0.0.1:9")
    before, after = map(int, counts.split())
    assert before == 0
    assert after > 1000  # the modules and objects imported so far
    source = (
        Path(__file__).resolve().parent.parent / "src/xpevents/relay/supervisor.py"
    ).read_text()
    assert "gc.freeze()" in source.split("def child_main", 1)[1]
