"""examples/flask under gunicorn --preload with 2 workers: every event arrives, once."""

from __future__ import annotations

from collections import Counter

import flask
import pytest

from xpevents import ConfigError
from xpevents.example import example_datafile
from xpevents.integrations.flask import Xpevents, current_client
from xpevents.testing import CollectorHandle

from apps import BIN, EXAMPLES, example_env, free_port, served, spread

FOLDER = EXAMPLES / "flask"


@pytest.mark.parametrize("flush_interval", ["0.05", "60"], ids=["while-serving", "at-exit"])
def test_gunicorn_preload_two_workers_deliver_every_event(
    collector: CollectorHandle, flush_interval: str
) -> None:
    port = free_port()
    env = example_env(FOLDER, collector.base_url, XPEVENTS_FLUSH_INTERVAL=flush_interval)
    command = [str(BIN / "gunicorn"), "--preload", "-w", "2", "-b", f"127.0.0.1:{port}", "app:app"]
    with served(command, port, cwd=FOLDER, env=env) as app:
        pids = spread(app.base_url, "/checkout", workers=2, at_least=40, at_most=400)
        requests = sum(pids.values())
        if flush_interval == "0.05":
            collector.wait_for(unique_events=2 * requests, timeout=20)
    assert len(pids) == 2, pids  # both workers served
    stats = collector.wait_for(unique_events=2 * requests, timeout=20)
    assert stats["unique_events"] == 2 * requests
    assert stats["duplicates"] == 0
    assert set(Counter(e["visitor_id"] for e in collector.events(limit=10_000)).values()) == {2}
    assert "Traceback" not in app.stderr, app.stderr


def test_config_errors_name_the_key() -> None:
    app = flask.Flask("t")
    with pytest.raises(ConfigError, match="XPEVENTS_DATAFILE"):
        Xpevents(app)
    app.config["XPEVENTS_DATAFILE"] = example_datafile()
    app.config["XPEVENTS_FLUSH_TIMOUT"] = 3
    with pytest.raises(
        ConfigError,
        match="unknown option 'XPEVENTS_FLUSH_TIMOUT'; did you mean 'XPEVENTS_FLUSH_TIMEOUT'\\?",
    ):
        Xpevents(app)
    del app.config["XPEVENTS_FLUSH_TIMOUT"]
    app.config["XPEVENTS_DISPATCHER"] = {"batch_sise": 3}
    with pytest.raises(
        ConfigError, match="dispatcher unknown option 'batch_sise'; did you mean 'batch_size'\\?"
    ):
        Xpevents(app)
    app.config["XPEVENTS_DISPATCHER"] = {}
    app.config["XPEVENTS_CLIENT"] = {"strikt": True}
    with pytest.raises(ConfigError, match="client unknown option 'strikt'; did you mean 'strict'"):
        Xpevents(app)
    app.config["XPEVENTS_CLIENT"] = {}
    app.config["XPEVENTS_DISPATCHER"] = {}
    app.config["XPEVENTS_FLUSH_TIMEOUT"] = "soon"
    with pytest.raises(ConfigError, match=r"XPEVENTS_FLUSH_TIMEOUT.*seconds > 0"):
        Xpevents(app)


def test_current_client_is_the_apps_and_refuses_outside_an_initialised_app() -> None:
    app = flask.Flask("t")
    app.config.update(
        XPEVENTS_DATAFILE=example_datafile(),
        XPEVENTS_ENDPOINT="http://127.0.0.1:9",  # nothing leaves loopback; never sent anyway
        XPEVENTS_DISPATCHER={"atexit_timeout": None},
    )
    extension = Xpevents()
    wiring = extension.init_app(app)
    with app.app_context():
        assert current_client.activate("checkout_button_color", "ann") is not None
        assert Xpevents.wiring() is wiring
    wiring.close(0.1)
    bare = flask.Flask("bare")
    with bare.app_context(), pytest.raises(ConfigError, match="Xpevents\\(app\\)"):
        current_client.activate("x", "y")
    with pytest.raises(ConfigError, match="already initialised"):
        extension.init_app(app)
