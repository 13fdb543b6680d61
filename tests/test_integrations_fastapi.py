"""examples/fastapi under a real uvicorn: install(), get_client, get_user, shutdown flush."""

from __future__ import annotations

import json
import signal
import sys
import warnings
from collections import Counter

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from xpevents import ConfigError
from xpevents.example import example_datafile
from xpevents.integrations.starlette import get_client, get_user, install
from xpevents.testing import CollectorHandle

from apps import EXAMPLES, example_env, free_port, hit, served

with warnings.catch_warnings():  # starlette 1.x prefers httpx2 for its TestClient
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytest.importorskip("fastapi")

FOLDER = EXAMPLES / "fastapi"


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_the_example_delivers_every_event_at_shutdown(
    collector: CollectorHandle, stop: signal.Signals
) -> None:
    port = free_port()
    # a long interval: nothing is sent before shutdown unless the lifespan flushes
    env = example_env(FOLDER, collector.base_url, XPEVENTS_FLUSH_INTERVAL="60")
    command = [sys.executable, "-m", "uvicorn", "app:app", "--port", str(port)]
    users = [f"user-{i}" for i in range(6)]
    with served(command, port, cwd=FOLDER, env=env, stop=stop) as app:
        bodies = hit(app.base_url, "/checkout", users)
        assert [json.loads(b)["user"] for b in bodies] == users
        assert collector.stats()["unique_events"] == 0
    stats = collector.wait_for(unique_events=12, timeout=10)
    assert stats["unique_events"] == 12
    per_user = Counter(e["visitor_id"] for e in collector.events())
    assert per_user == dict.fromkeys(users, 2)
    assert "lost" not in app.stderr, app.stderr


def test_a_request_without_a_user_is_a_400_and_sends_nothing(collector: CollectorHandle) -> None:
    port = free_port()
    env = example_env(FOLDER, collector.base_url)
    command = [sys.executable, "-m", "uvicorn", "app:app", "--port", str(port)]
    with served(command, port, cwd=FOLDER, env=env) as app:
        with httpx.Client(base_url=app.base_url, trust_env=False) as http:
            response = http.get("/checkout")
        assert response.status_code == 400
        assert "no valid user id" in response.text
    assert collector.stats()["unique_events"] == 0


def _app(**options: object) -> Starlette:
    async def who(request):  # type: ignore[no-untyped-def]
        user = get_user(request)
        assert get_user(request) is user  # one context per request
        assert get_client(request) is request.app.state.xpevents.client
        return PlainTextResponse(user.user_id)

    app = Starlette(routes=[Route("/who", who)])
    install(app, example_datafile(), endpoint="http://127.0.0.1:9", **options)  # type: ignore[arg-type]
    return app


def test_get_user_makes_one_context_per_request_with_its_attributes() -> None:
    app = _app(user=lambda r: (r.headers["x-user-id"], {"plan": "pro"}))
    with TestClient(app) as http:
        assert http.get("/who", headers={"x-user-id": "ann"}).text == "ann"
        assert http.get("/who", headers={"x-user-id": "bob"}).text == "bob"


def test_get_user_without_a_user_function_says_how_to_give_one() -> None:
    app = _app()
    with (
        TestClient(app, raise_server_exceptions=True) as http,
        pytest.raises(ConfigError, match="user=lambda request"),
    ):
        http.get("/who")


def test_install_validates_what_it_is_given() -> None:
    with pytest.raises(ConfigError, match="Starlette or FastAPI"):
        install(object(), example_datafile())
    with pytest.raises(ConfigError, match="exactly one of 'datafile'"):
        install(Starlette())
    with pytest.raises(ConfigError, match="user="):
        install(Starlette(), example_datafile(), user="header")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="flush_timeout"):
        install(Starlette(), example_datafile(), flush_timeout=-1)
    with pytest.raises(ConfigError, match="batch_size"):
        install(Starlette(), example_datafile(), batch_size=0)
    with pytest.raises(ConfigError, match="cannot read the datafile"):
        install(Starlette(), datafile_path="/nonexistent/datafile.json")
