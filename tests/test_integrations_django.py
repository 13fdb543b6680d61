"""examples/django under gunicorn --preload (sync and gthread workers): every event arrives."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from xpevents.example import example_datafile
from xpevents.testing import CollectorHandle

from apps import BIN, EXAMPLES, example_env, free_port, served, spread
from servers import datafile_server

FOLDER = EXAMPLES / "django"


@pytest.mark.parametrize(
    ("worker", "flush_interval"),
    [("sync", "60"), ("gthread", "60"), ("gthread", "0.05")],
    ids=["sync-at-exit", "gthread-at-exit", "gthread-while-serving"],
)
def test_gunicorn_preload_workers_deliver_every_event(
    collector: CollectorHandle, worker: str, flush_interval: str
) -> None:
    port = free_port()
    env = example_env(FOLDER, collector.base_url, XPEVENTS_FLUSH_INTERVAL=flush_interval)
    command = [str(BIN / "gunicorn"), "--preload", "-w", "2", "-k", worker]
    command += ["--threads", "4", "-b", f"127.0.0.1:{port}", "shop.wsgi"]
    with served(command, port, cwd=FOLDER, env=env) as app:
        pids = spread(app.base_url, "/checkout", workers=2, at_least=40, at_most=400)
        requests = sum(pids.values())
    assert len(pids) == 2, pids  # both forked workers served
    stats = collector.wait_for(unique_events=2 * requests, timeout=20)
    assert stats["unique_events"] == 2 * requests
    assert stats["duplicates"] == 0
    assert set(Counter(e["visitor_id"] for e in collector.events(limit=10_000)).values()) == {2}
    assert "Traceback" not in app.stderr, app.stderr


def _django(tmp_path: Path, settings: str, code: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "bad_settings.py").write_text(
        "INSTALLED_APPS = ['xpevents.integrations.django']\nSECRET_KEY = 'x'\n" + settings
    )
    script = "import django; django.setup()\n" + textwrap.dedent(code)
    env = example_env(tmp_path, "http://127.0.0.1:9", DJANGO_SETTINGS_MODULE="bad_settings")
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("", "settings.XPEVENTS is missing"),
        ("XPEVENTS = {'DATAFILE_PATH': '/nonexistent.json'}", "cannot read the datafile"),
        ("XPEVENTS = {'DATAFILE': '{}', 'FLUSH': 1}", "unknown option 'FLUSH'"),
        ("XPEVENTS = {'DATAFILE': '{}'}", "DatafileError"),
        ("XPEVENTS = {'DATAFILE_PATH': 'x', 'DATAFILE': '{}'}", "or 'DATAFILE_PATH', not both"),
        ("XPEVENTS = {}", "exactly one of 'DATAFILE'"),
    ],
)
def test_a_bad_setting_stops_the_start_with_its_name(
    tmp_path: Path, settings: str, message: str
) -> None:
    result = _django(tmp_path, settings, "")
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_client_is_the_one_built_at_ready_and_pathlib_paths_work(tmp_path: Path) -> None:
    (tmp_path / "datafile.json").write_text(example_datafile())
    folder = str(tmp_path)
    path = f"pathlib.Path({folder!r}) / 'datafile.json'"
    settings = f"import pathlib\nXPEVENTS = {{'DATAFILE_PATH': {path}}}"
    code = """
        from xpevents.integrations.django import client, wiring
        first = client()
        import django.apps
        django.apps.apps.get_app_config("xpevents").ready()  # a second ready() is a no-op
        assert client() is first and wiring().client is first
        print(first.activate("checkout_button_color", "ann"))
        wiring().dispatcher.close(0.1)
    """
    result = _django(tmp_path, settings, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() != "None"


def test_client_before_setup_says_what_to_add() -> None:
    from xpevents import ConfigError
    from xpevents.integrations.django import client

    with pytest.raises(ConfigError, match="INSTALLED_APPS"):
        client()


def test_forked_workers_follow_a_polled_datafile(collector: CollectorHandle) -> None:
    # The master builds the client (and its poller) before gunicorn forks: each worker
    # must poll on its own and pick up a new revision.
    datafile = json.loads(example_datafile())
    with datafile_server() as server:
        server.publish("K", {**datafile, "revision": "101"})
        port = free_port()
        env = example_env(
            FOLDER,
            collector.base_url,
            XPEVENTS_SDK_KEY="K",
            XPEVENTS_DATAFILE_URL_TEMPLATE=server.template,
            XPEVENTS_UPDATE_INTERVAL="0.2",
        )
        command = [str(BIN / "gunicorn"), "--preload", "-w", "2", "-b", f"127.0.0.1:{port}"]
        with served([*command, "shop.wsgi"], port, cwd=FOLDER, env=env) as app:
            assert _revisions(app.base_url) == {"101"}
            server.publish("K", {**datafile, "revision": "102"})
            deadline = time.monotonic() + 30
            seen: dict[str, str] = {}
            while len(seen) < 2 or set(seen.values()) != {"102"}:
                assert time.monotonic() < deadline, seen
                answer = httpx.get(f"{app.base_url}/checkout?user=u", trust_env=False).json()
                seen[str(answer["pid"])] = answer["revision"]
    assert "Traceback" not in app.stderr, app.stderr


def _revisions(base_url: str) -> set[str]:
    answers = [httpx.get(f"{base_url}/checkout?user=u{i}", trust_env=False) for i in range(10)]
    return {a.json()["revision"] for a in answers}
