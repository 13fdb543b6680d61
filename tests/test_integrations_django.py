"""examples/django under gunicorn --preload (sync and gthread workers): every event arrives."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from xpevents.testing import CollectorHandle

from apps import BIN, EXAMPLES, example_env, free_port, served, spread

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
        ("XPEVENTS = {'DATAFILE': '{}', 'FLUSH': 1}", "unknown option(s) FLUSH"),
        ("XPEVENTS = {'DATAFILE': '{}'}", "DatafileError"),
        ("XPEVENTS = {'DATAFILE_PATH': 'x', 'DATAFILE': '{}'}", "exactly one of 'DATAFILE'"),
    ],
)
def test_a_bad_setting_stops_the_start_with_its_name(
    tmp_path: Path, settings: str, message: str
) -> None:
    result = _django(tmp_path, settings, "")
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_client_is_the_one_built_at_ready_and_pathlib_paths_work(tmp_path: Path) -> None:
    from xpevents.example import example_datafile

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
