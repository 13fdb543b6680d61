"""Client(sdk_key=... / config_manager=...) against a real datafile server on 127.0.0.1:
not ready then ready, fallback, bad datafiles, auth, timeouts, cache, swaps under load,
forced variations across swaps, fork, asyncio."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from xpevents import Client
from xpevents.client.user_context import OptimizelyDecisionContext, OptimizelyForcedDecision
from xpevents.config import AsyncPollingConfigManager, PollingConfigManager
from xpevents.dispatch.aio import AsyncDispatcher
from xpevents.errors import ConfigError

from servers import DatafileServer, Reply, datafile_server, scripted_server

FIXTURE = Path(__file__).parent / "fixtures" / "datafile.json"
KEY = "ClientSdkKey42"
NOT_READY = "Optimizely SDK not configured properly yet."


def datafile(revision: int, *, flipped: bool = False) -> dict[str, Any]:
    """The fixture at ``revision``; ``flipped`` reverses every traffic allocation's
    variations, so most users land in another variation than in the unflipped one."""
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    data["revision"] = str(revision)
    if flipped:
        experiments = list(data["experiments"])
        experiments += [e for g in data["groups"] for e in g["experiments"]]
        experiments += [e for r in data["rollouts"] for e in r["experiments"]]
        for experiment in experiments:
            ranges = experiment["trafficAllocation"]
            ids = [t["entityId"] for t in ranges][::-1]
            for item, entity_id in zip(ranges, ids, strict=True):
                item["entityId"] = entity_id
    return data


class Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def dispatch_event(self, event: Any) -> None:
        self.events.append(event)


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def poller(server: DatafileServer, **options: Any) -> PollingConfigManager:
    options.setdefault("update_interval", 0.05)
    options.setdefault("backoff_base", 0.02)
    options.setdefault("blocking_timeout", 2.0)
    options.setdefault("url_template", server.template)
    return PollingConfigManager(KEY, **options)


def test_not_ready_until_the_cdn_answers_then_decides(caplog: pytest.LogCaptureFixture) -> None:
    with datafile_server() as server:  # nothing published yet: 404
        recorder = Recorder()
        updates: list[tuple[Any, ...]] = []
        manager = poller(server, blocking_timeout=0.3)
        with Client(config_manager=manager, event_dispatcher=recorder) as client:
            client.notification_center.add_notification_listener(
                "OPTIMIZELY_CONFIG_UPDATE", lambda *args: updates.append(args)
            )
            assert not client.is_valid and client.config is None
            with caplog.at_level(logging.ERROR, logger="xpevents.client"):
                assert client.activate("checkout_button_color", "u1") is None
            assert client.is_feature_enabled("new_checkout", "u1") is False
            assert client.get_variation("checkout_button_color", "u1") is None
            client.track("purchase", "u1")
            decision = client.decide("u1", "new_checkout")
            assert not decision.enabled and decision.reasons == (NOT_READY,)
            user = client.create_user_context("u1")
            assert user is not None and user.decide("new_checkout").reasons == (NOT_READY,)
            assert recorder.events == []
            lines = [r.getMessage() for r in caplog.records if r.name == "xpevents.client"]
            assert len(lines) == 6  # one line per call, naming the call and the URL
            assert all("no datafile yet from " + manager.url in line for line in lines)
            assert [line.split(":")[0] for line in lines] == [
                "activate",
                "is_feature_enabled",
                "get_variation",
                "track",
                "decide",
                "decide",
            ]
            assert client.config_stats().failures["http_404"] >= 1

            assert client.get_optimizely_config() is None
            server.publish(KEY, datafile(7))
            wait_until(lambda: client.is_valid)
            assert client.config_stats().revision == "7"
            optimizely_config = client.get_optimizely_config()
            assert optimizely_config is not None and optimizely_config.revision == "7"
            assert optimizely_config.get_datafile() == server.files[KEY][0].decode()
            assert client.get_optimizely_config() is optimizely_config  # built once
            assert client.activate("checkout_button_color", "u1") is not None
            assert user.decide("new_checkout").reasons != (NOT_READY,)  # same user context
            assert len(recorder.events) == 2  # activate, and decide's feature-test impression
            assert updates == [()]  # the official listener signature: no arguments
        assert manager._closed  # close() stopped the manager


def test_the_first_call_waits_once_for_the_first_fetch() -> None:
    with datafile_server() as server:
        server.fault = Reply(200, {}, json.dumps(datafile(3)).encode(), delay=0.3)
        manager = poller(server, blocking_timeout=5.0)
        with Client(config_manager=manager, event_dispatcher=Recorder()) as client:
            assert not client.is_valid  # is_valid never waits
            assert client.get_variation("checkout_button_color", "u1") is not None  # waited
            assert client.config_stats().revision == "3"


def test_a_fallback_datafile_is_used_while_the_cdn_is_down() -> None:
    with datafile_server() as server:
        server.fault = Reply(503)
        manager = poller(server, datafile=json.dumps(datafile(1)))
        with Client(config_manager=manager, event_dispatcher=Recorder()) as client:
            assert client.is_valid and client.config_stats().revision == "1"
            assert client.activate("checkout_button_color", "u1") is not None
            wait_until(lambda: client.config_stats().failures.get("http_503", 0) >= 2)
            server.fault = None
            server.publish(KEY, datafile(2))
            wait_until(lambda: client.config is not None and client.config.revision == "2")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json at all", "invalid_datafile"),
        (b"<html><body>Service unavailable</body></html>", "invalid_datafile"),
        (json.dumps(datafile(9)).encode()[:500], "invalid_datafile"),
        (json.dumps(datafile(1)).encode(), "older_revision"),
    ],
    ids=["garbage", "html-200", "truncated", "older-revision"],
)
def test_a_bad_datafile_never_replaces_the_good_one(body: bytes, reason: str) -> None:
    with datafile_server() as server:
        server.publish(KEY, datafile(5))
        with Client(config_manager=poller(server), event_dispatcher=Recorder()) as client:
            assert client.get_variation("checkout_button_color", "u1") is not None
            server.publish(KEY, body)
            wait_until(lambda: client.config_stats().failures.get(reason, 0) >= 2)
            assert client.config is not None and client.config.revision == "5"
            assert client.activate("checkout_button_color", "u1") is not None


def test_an_authenticated_datafile_missing_or_wrong_token() -> None:
    with datafile_server(token="s3cret") as server:
        server.publish(KEY, datafile(4))
        template = server.auth_template
        wrong = poller(server, url_template=template, datafile_access_token="nope")
        with Client(config_manager=wrong, event_dispatcher=Recorder()) as client:
            time.sleep(0.5)  # ten intervals: a permanent error waits a whole one each time
            stats = client.config_stats()
            assert not client.is_valid and stats.failures["unauthorized"] >= 1
            assert stats.fetches <= 12  # no retry storm
            assert "datafile_access_token" in (stats.last_error or "")
        good = poller(server, url_template=template, datafile_access_token="s3cret")
        with Client(config_manager=good, event_dispatcher=Recorder()) as client:
            assert client.get_variation("checkout_button_color", "u1") is not None
        assert server.requests[-1].headers["Authorization"] == "Bearer s3cret"


def test_a_slow_cdn_times_out_and_the_fallback_decides() -> None:
    with datafile_server() as server:
        server.publish(KEY, datafile(2))
        server.fault = Reply(200, {}, json.dumps(datafile(3)).encode(), delay=1.0)
        manager = poller(server, datafile=datafile(2), timeout=0.1)
        with Client(config_manager=manager, event_dispatcher=Recorder()) as client:
            started = time.monotonic()
            assert client.activate("checkout_button_color", "u1") is not None
            assert time.monotonic() - started < 0.5  # the fallback answers, no wait
            wait_until(lambda: client.config_stats().failures.get("timeout", 0) >= 1)
            assert client.config is not None and client.config.revision == "2"


def test_a_corrupt_cache_is_ignored_and_rewritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "datafile.json"
    cache.write_bytes(b'{"version": "4", "trunc')
    with datafile_server() as server:
        server.fault = Reply(503)
        with caplog.at_level(logging.WARNING, logger="xpevents.config"):
            manager = poller(server, datafile_cache=cache, blocking_timeout=0.1)
        assert any("cache" in r.getMessage() for r in caplog.records)
        with Client(config_manager=manager, event_dispatcher=Recorder()) as client:
            assert client.get_variation("checkout_button_color", "u1") is None
            server.fault = None
            server.publish(KEY, datafile(6))
            wait_until(lambda: client.is_valid)
            wait_until(lambda: b'"revision": "6"' in cache.read_bytes())
        assert json.loads(cache.read_text())["revision"] == "6"
        assert stat.S_IMODE(cache.stat().st_mode) == 0o600
        server.fault = Reply(503)  # a restart while the CDN is down: yesterday's datafile
        with Client(config_manager=poller(server, datafile_cache=cache)) as client:
            assert client.config is not None and client.config.revision == "6"


Answers = dict[bool, dict[str, dict[str, str | None]]]
VariationIds = dict[bool, dict[tuple[str, str], str]]


def expected_answers(users: list[str]) -> tuple[Answers, VariationIds]:
    """decide_all's variations per user, and each experiment's variation id per user, for
    the plain and the flipped datafile (from static clients)."""
    expected: Answers = {}
    variation_ids: VariationIds = {}
    for flipped in (False, True):
        with Client(datafile(1, flipped=flipped), event_dispatcher=Recorder()) as static:
            expected[flipped] = {
                u: {k: d.variation_key for k, d in static.decide_all(u).items()} for u in users
            }
            config = static.config
            assert config is not None
            variation_ids[flipped] = {
                (u, e.id): e.variations_by_key[v].id
                for u in users
                for e in config.experiments.values()
                if (v := static.get_variation(e.key, u)) is not None
            }
    return expected, variation_ids


def check_impressions(events: list[Any], variation_ids: VariationIds) -> None:
    """Each impression's variation is the one its payload's revision gives the user."""
    for event in events:
        params = event.params
        flipped = int(params["revision"]) % 2 == 0
        for visitor in params["visitors"]:
            for decision in visitor["snapshots"][0].get("decisions", []):
                key = (visitor["visitor_id"], decision["experiment_id"])
                if key in variation_ids[flipped]:
                    assert decision["variation_id"] == variation_ids[flipped][key]


def test_swaps_under_load_never_mix_two_revisions() -> None:
    """Threads decide while the datafile alternates between two bucketings many times a
    second; every answer (and every impression) matches exactly one of them."""
    users = [f"user-{n}" for n in range(40)]
    expected, variation_ids = expected_answers(users)
    differ = sum(expected[False][u] != expected[True][u] for u in users)
    assert differ >= len(users) // 2  # the pair really buckets users differently

    with datafile_server() as server:
        server.publish(KEY, datafile(1))
        recorder = Recorder()
        manager = poller(server, update_interval=0.002, backoff_base=0.001)
        with Client(config_manager=manager, event_dispatcher=recorder) as client:
            wait_until(lambda: client.is_valid)
            stop = threading.Event()
            errors: list[BaseException] = []
            answers = [0]

            def decide() -> None:
                n = 0
                while not stop.is_set():
                    user = users[n % len(users)]
                    n += 1
                    try:
                        got = {k: d.variation_key for k, d in client.decide_all(user).items()}
                        assert got in (expected[False][user], expected[True][user]), user
                        client.activate("checkout_button_color", user)
                        answers[0] += 1
                    except BaseException as exc:
                        errors.append(exc)
                        return

            threads = [threading.Thread(target=decide) for _ in range(4)]
            for t in threads:
                t.start()
            for revision in range(2, 42):
                server.publish(KEY, datafile(revision, flipped=revision % 2 == 0))
                time.sleep(0.01)
            stop.set()
            for t in threads:
                t.join()
        assert not errors, errors[0]
        assert answers[0] > 100
        assert client.config_stats().changes >= 10
        check_impressions(recorder.events, variation_ids)


def test_forced_variations_and_forced_decisions_survive_a_swap() -> None:
    with datafile_server() as server:
        server.publish(KEY, datafile(1))
        with Client(config_manager=poller(server), event_dispatcher=Recorder()) as client:
            assert client.set_forced_variation("homepage_hero_copy", "u1", "treatment")
            user = client.create_user_context("u1")
            assert user is not None
            context = OptimizelyDecisionContext("new_checkout", None)
            forced = client.decide("u1", "new_checkout").variation_key
            other = next(
                v.key
                for e in client.config.experiments.values()  # type: ignore[union-attr]
                if e.id == "21000081541"
                for v in e.variations
                if v.key != forced
            )
            user.set_forced_decision(context, OptimizelyForcedDecision(other))
            server.publish(KEY, datafile(2, flipped=True))
            wait_until(lambda: client.config.revision == "2")  # type: ignore[union-attr]
            assert client.get_variation("homepage_hero_copy", "u1") == "treatment"
            assert client.get_forced_variation("homepage_hero_copy", "u1") == "treatment"
            assert user.decide("new_checkout").variation_key == other
            # a revision without that variation: the forced one is ignored, not an error
            third = datafile(3)
            for experiment in third["experiments"]:
                if experiment["key"] == "homepage_hero_copy":
                    experiment["variations"][1]["key"] = "treatment_v2"
            server.publish(KEY, third)
            wait_until(lambda: client.config.revision == "3")  # type: ignore[union-attr]
            assert client.get_forced_variation("homepage_hero_copy", "u1") is None
            assert client.get_variation("homepage_hero_copy", "u1") in ("control", "treatment_v2")


def test_a_forked_child_keeps_deciding_and_polls_on_its_own() -> None:
    with datafile_server() as server:
        server.publish(KEY, datafile(1))
        with Client(config_manager=poller(server), event_dispatcher=Recorder()) as client:
            wait_until(lambda: client.is_valid)
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the gunicorn --preload worker
                code = b"no"
                try:
                    os.close(read)
                    ok = client.get_variation("checkout_button_color", "u1") is not None
                    deadline = time.monotonic() + 5
                    while client.config.revision != "2" and time.monotonic() < deadline:  # type: ignore[union-attr]
                        time.sleep(0.01)
                    if ok and client.config.revision == "2":  # type: ignore[union-attr]
                        code = b"ok"
                finally:
                    os.write(write, code)
                    os._exit(0)
            os.close(write)
            server.publish(KEY, datafile(2))  # only the child's own poller can see it there
            answer = os.read(read, 2)
            os.waitpid(pid, 0)
        assert answer == b"ok"


def test_the_asyncio_poller_with_an_async_dispatcher() -> None:
    with datafile_server() as server, scripted_server() as events:
        server.publish(KEY, datafile(1))

        async def main() -> tuple[str | None, str | None]:
            manager = AsyncPollingConfigManager(
                KEY, url_template=server.template, update_interval=0.05, backoff_base=0.02
            )
            async with manager, AsyncDispatcher(endpoint=events.base_url) as dispatcher:
                client = Client(config_manager=manager, event_dispatcher=dispatcher)
                first = client.config_stats().revision
                assert client.activate("checkout_button_color", "u1") is not None
                server.publish(KEY, datafile(2))
                for _ in range(300):
                    if client.config_stats().revision == "2" and client.is_valid:
                        break
                    await asyncio.sleep(0.01)
                assert client.activate("checkout_button_color", "u2") is not None
                assert (await dispatcher.flush(10)).pending == 0
                last = None if client.config is None else client.config.revision
                client.close()
            return first, last

        assert asyncio.run(main()) == ("1", "2")
        revisions = {json.loads(r.body)["revision"] for r in events.received if r.method == "POST"}
        assert revisions <= {"1", "2"} and "2" in revisions


def test_sdk_key_polls_the_cdn_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Client(sdk_key=...) polls the official URL; a loopback proxy stands in for the
    internet (it sees the CONNECT and refuses it), so nothing leaves 127.0.0.1."""
    with scripted_server() as proxy:
        proxy.default = Reply(502)
        for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy.base_url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        with Client(sdk_key=KEY, datafile=datafile(1), event_dispatcher=Recorder()) as client:
            assert client.config_manager.url == (  # type: ignore[attr-defined]
                f"https://cdn.optimizely.com/datafiles/{KEY}.json"
            )
            assert client.is_valid  # the fallback
            wait_until(lambda: "CONNECT" in (client.config_stats().last_error or ""))
        with Client(
            sdk_key=KEY, datafile_access_token="tok", event_dispatcher=Recorder()
        ) as client:
            assert client.config_manager.url == (  # type: ignore[attr-defined]
                f"https://config.optimizely.com/datafiles/auth/{KEY}.json"
            )
            wait_until(lambda: "CONNECT" in (client.config_stats().last_error or ""))


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({}, "give a datafile, an sdk_key"),
        ({"datafile": 42}, "datafile=int"),
        ({"sdk_key": " "}, "sdk_key"),
        ({"sdk_key": 12}, "sdk_key"),
        ({"datafile_access_token": "t", "datafile": "{}"}, "datafile_access_token"),
        ({"datafile_cache": "/tmp/x", "datafile": "{}"}, "datafile_cache"),
        ({"sdk_key": "k", "datafile_cache": 3}, "datafile_cache"),
        ({"config_manager": object()}, "config_manager"),
        ({"config_manager": "STATIC", "sdk_key": "k"}, "config_manager"),
    ],
)
def test_constructor_arguments_are_checked(kwargs: dict[str, Any], named: str) -> None:
    if kwargs.get("config_manager") == "STATIC":
        from xpevents.config import StaticConfigManager
        from xpevents.decide.datafile import load_config

        kwargs["config_manager"] = StaticConfigManager(load_config(datafile(1)))
    with pytest.raises(ConfigError, match=named.replace("(", r"\(")):
        Client(**kwargs, event_dispatcher=Recorder())
