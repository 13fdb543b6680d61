"""``xpevents datafile example|show|lint`` and ``xpevents decide --explain``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from xpevents import Client, OptimizelyDecideOption
from xpevents.cli import main
from xpevents.example import example_datafile
from xpevents.recording import RecordingDispatcher

from servers import datafile_server

EXAMPLE = json.loads(example_datafile())


def _run(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_example_prints_the_shipped_datafile() -> None:
    result = _run("datafile", "example")
    assert result.exit_code == 0
    assert json.loads(result.output) == EXAMPLE


def test_show_lists_every_experiment_and_flag_as_json() -> None:
    result = _run("datafile", "show", "example", "--json")
    assert result.exit_code == 0
    shown = json.loads(result.output)
    assert {e["key"] for e in shown["experiments"]} >= {e["key"] for e in EXAMPLE["experiments"]}
    assert {f["key"] for f in shown["flags"]} == {f["key"] for f in EXAMPLE["featureFlags"]}
    assert shown["revision"] == EXAMPLE["revision"]
    tables = _run("datafile", "show", "example")
    assert "experiments (revision" in tables.output and "flags" in tables.output


def test_show_reads_stdin_and_fetches_by_sdk_key_from_a_loopback_server() -> None:
    assert _run("datafile", "show", "-", "--json", input=example_datafile()).exit_code == 0
    with datafile_server() as server:
        server.publish("KEY1", EXAMPLE)
        template = server.base_url + "/datafiles/{sdk_key}.json"
        result = _run("datafile", "show", "--sdk-key", "KEY1", "--url-template", template, "--json")
        assert result.exit_code == 0, result.output
        missing = _run("datafile", "show", "--sdk-key", "NOPE", "--url-template", template)
        assert missing.exit_code == 1 and "HTTP 404" in missing.output


def test_errors_are_one_line_never_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for args in (
        ["datafile", "show", str(bad)],
        ["datafile", "show", str(tmp_path / "missing.json")],
        ["datafile", "show"],
        ["decide", str(bad), "u1"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "xpevents", *args], capture_output=True, text=True, timeout=60
        )
        assert result.returncode != 0, args
        assert "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith(("Error:", "Usage:")), result.stderr


def _lint(datafile: dict[str, Any], tmp_path: Path) -> tuple[int, list[dict[str, str]]]:
    path = tmp_path / "d.json"
    path.write_text(json.dumps(datafile))
    result = _run("datafile", "lint", str(path), "--json")
    return result.exit_code, json.loads(result.output)


def test_lint_is_clean_on_the_example_and_finds_each_kind_of_problem(tmp_path: Path) -> None:
    assert _lint(EXAMPLE, tmp_path) == (0, [])
    broken = json.loads(example_datafile())
    first = broken["experiments"][0]
    first["trafficAllocation"] = [
        {"entityId": first["variations"][0]["id"], "endOfRange": 12000},
        {"entityId": first["variations"][1]["id"], "endOfRange": 5000},
    ]
    second = broken["experiments"][1]
    second["trafficAllocation"] = []
    broken["audiences"].append({"id": "999", "name": "Nobody uses me", "conditions": "[]"})
    broken["attributes"].append({"id": "998", "key": "shoe_size"})
    code, findings = _lint(broken, tmp_path)
    assert code == 1
    text = "\n".join(f"{f['where']}: {f['message']}" for f in findings)
    assert "past 10000" in text
    assert "can never be reached" in text
    assert f"experiment {second['key']!r}: running with 0% traffic" in text
    assert "audience 'Nobody uses me'" in text
    assert "attribute 'shoe_size'" in text


def _decide(*args: str) -> list[dict[str, Any]]:
    result = _run("decide", "example", *args, "--json", "--explain")
    assert result.exit_code == 0, result.output
    decided: list[dict[str, Any]] = json.loads(result.output)
    return decided


def test_decide_agrees_with_the_client_for_every_flag_and_many_users() -> None:
    client = Client(example_datafile(), event_dispatcher=RecordingDispatcher())
    for user in ("u1", "user-42", "alice", "bob-7"):
        attrs = {"country": "US", "age": 30, "is_premium": True}
        decided = _decide(
            user, "--attr", "country=US", "--attr", "age=30", "--attr", "is_premium=true"
        )
        assert {d["key"] for d in decided} == set(client.config.flags)
        for entry in decided:
            official = client.decide(
                user, entry["key"], attrs, [OptimizelyDecideOption.INCLUDE_REASONS]
            )
            assert (entry["enabled"], entry["variation_key"], entry["rule_key"]) == (
                official.enabled,
                official.variation_key,
                official.rule_key,
            )
            assert entry["reasons"] == list(official.reasons)
            # the last traffic step names the variation the engine chose
            traffic = [s for s in entry["steps"] if s["check"] == "traffic"]
            if official.variation_key is not None:
                assert traffic[-1]["outcome"] == official.variation_key


def test_explain_names_the_attribute_whose_type_is_wrong() -> None:
    experiment = next(
        e for e in EXAMPLE["experiments"] if e["audienceIds"] == ["20410000001"]
    )  # North America adults: country in (US, CA) and age >= 18
    (entry,) = _decide("u7", experiment["key"], "--attr", "country=US", "--attr", 'age="30"')
    assert entry["kind"] == "experiment" and entry["variation_key"] is None
    age = next(s for s in entry["steps"] if s["check"].strip().startswith("age ge"))
    assert age["outcome"] == "unknown" and "'30' (str)" in age["detail"]
    (good,) = _decide("u7", experiment["key"], "--attr", "country=US", "--attr", "age=30")
    audiences = [s for s in good["steps"] if s["check"] == "audiences"]
    assert audiences[-1]["outcome"] == "true"


def test_decide_reports_an_unknown_key_without_failing() -> None:
    (entry,) = _decide("u1", "no_such_flag")
    assert entry["kind"] == "unknown"
    text = _run("decide", "example", "u1", "no_such_flag").output
    assert "not a flag or experiment key" in text


def test_bad_attribute_syntax_is_a_usage_error() -> None:
    result = _run("decide", "example", "u1", "--attr", "novalue")
    assert result.exit_code == 2 and "NAME=VALUE" in result.output
