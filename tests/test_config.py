"""Config managers against a real datafile server on 127.0.0.1: fetch, 304, swap, refuse
bad datafiles, back off, cache on disk, authenticated datafiles, file watching, fork."""

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

import httpx
import pytest

from xpevents.config import (
    AsyncPollingConfigManager,
    ConfigManager,
    FileConfigManager,
    PollingConfigManager,
    StaticConfigManager,
)
from xpevents.config.fetch import DatafileSource, Result, datafile_url
from xpevents.config.schedule import next_delay
from xpevents.decide.datafile import load_config
from xpevents.errors import ConfigError

from servers import DatafileServer, Reply, datafile_server

FIXTURE = Path(__file__).parent / "fixtures" / "datafile.json"
KEY = "TestSdkKey123"


def datafile(revision: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    data["revision"] = str(revision)
    return data


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def manager(server: DatafileServer, **options: Any) -> PollingConfigManager:
    options.setdefault("update_interval", 0.05)
    options.setdefault("backoff_base", 0.02)
    options.setdefault("blocking_timeout", 5.0)
    return PollingConfigManager(KEY, url_template=server.template, **options)


# -- the sans-I/O rules ----------------------------------------------------------------


def test_the_url_comes_from_the_key_the_template_or_url() -> None:
    assert datafile_url("K") == "https://cdn.optimizely.com/datafiles/K.json"
    auth = datafile_url("K", authenticated=True)
    assert auth == "https://config.optimizely.com/datafiles/auth/K.json"
    assert datafile_url("K", url_template="http://h/{sdk_key}") == "http://h/K"
    assert datafile_url(None, url="http://h/x.json") == "http://h/x.json"
    for bad in ({"sdk_key": None}, {"sdk_key": "K", "url_template": "http://h/x"}):
        with pytest.raises(ConfigError):
            datafile_url(**bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="spaces"):
        datafile_url("K", url=" http://h/x ")


def test_an_answer_is_validated_before_it_may_replace_a_config() -> None:
    source = DatafileSource("http://h/x")
    good = json.dumps(datafile(10)).encode()
    first = source.answer(200, {"etag": '"a"'}, good)
    assert first.result is Result.CHANGED and first.config is not None
    assert source.headers()["If-None-Match"] == '"a"'
    assert source.answer(200, {}, good).result is Result.UNCHANGED  # same revision
    assert source.answer(304, {}, b"").result is Result.UNCHANGED
    html = source.answer(200, {}, b"<html><body>Service Unavailable</body></html>")
    assert (html.result, html.reason) == (Result.REFUSED, "invalid_datafile")
    truncated = source.answer(200, {}, good[: len(good) // 2])
    assert truncated.result is Result.REFUSED
    older = source.answer(200, {}, json.dumps(datafile(9)).encode())
    assert (older.result, older.reason) == (Result.REFUSED, "older_revision")
    unsupported = source.answer(200, {}, json.dumps({**datafile(11), "version": "99"}).encode())
    assert unsupported.result is Result.REFUSED
    denied = source.answer(403, {}, b"")
    assert (denied.reason, denied.permanent) == ("unauthorized", True)
    assert source.answer(404, {}, b"").permanent
    flaky = source.answer(503, {}, b"")
    assert (flaky.result, flaky.reason, flaky.permanent) == (Result.FAILED, "http_503", False)
    assert source.revision == "10"


def test_the_schedule_jitters_backs_off_and_waits_an_interval_after_permanent_errors() -> None:
    import random

    rng = random.Random(1)
    healthy = [
        next_delay(300, failures=0, permanent=False, backoff_base=1, rng=rng) for _ in range(50)
    ]
    assert all(270 <= d <= 330 for d in healthy) and len(set(healthy)) == 50
    backoff = [
        next_delay(300, failures=n, permanent=False, backoff_base=1, rng=rng) for n in (1, 4, 20)
    ]
    assert backoff[0] <= 1 and 4 <= backoff[1] <= 8 and 150 <= backoff[2] <= 300
    assert next_delay(300, failures=3, permanent=True, backoff_base=1, rng=rng) >= 270


# -- polling ----------------------------------------------------------------------------


def test_polls_swaps_new_revisions_and_answers_304(caplog: pytest.LogCaptureFixture) -> None:
    with datafile_server() as server:
        server.publish(KEY, datafile(1))
        changes: list[str] = []
        with manager(server) as m:
            m.add_listener(lambda config: changes.append(config.revision))
            config = m.get_config()
            assert config is not None and config.revision == "1"
            wait_until(lambda: m.stats().not_modified >= 2)
            server.publish(KEY, datafile(2))
            wait_until(lambda: (m.get_config() or config).revision == "2")
            stats = m.stats()
        assert changes[-1] == "2"
        assert stats.changes == 2 and stats.ready and stats.revision == "2"
        assert stats.not_modified >= 2 and stats.failures == {}
        conditional = [r for r in server.requests if "If-None-Match" in r.headers]
        assert conditional and all(r.headers["If-None-Match"].startswith('"v') for r in conditional)


def test_a_bad_datafile_never_replaces_a_good_one(caplog: pytest.LogCaptureFixture) -> None:
    with datafile_server() as server:
        server.publish(KEY, datafile(5))
        with manager(server) as m:
            assert m.get_config() is not None
            with caplog.at_level(logging.ERROR, logger="xpevents.config"):
                server.fault = Reply(200, body=b"<html>oops</html>")
                wait_until(lambda: m.stats().failures.get("invalid_datafile", 0) >= 3)
                server.fault = None
                server.publish(KEY, datafile(4))  # an older revision
                wait_until(lambda: m.stats().failures.get("older_revision", 0) >= 1)
            assert (m.get_config() or load_config(datafile(0))).revision == "5"
            errors = [r for r in caplog.records if r.levelno == logging.ERROR]
            assert len(errors) <= 2  # once per episode, not once per poll


def test_cdn_down_at_start_uses_the_fallback_then_the_fetched_one() -> None:
    with datafile_server() as server:
        server.fault = Reply(503)
        started = time.monotonic()
        with manager(server, datafile=json.dumps(datafile(1)), blocking_timeout=5) as m:
            assert (m.get_config() or load_config(datafile(0))).revision == "1"
            assert time.monotonic() - started < 1.0  # a fallback is never waited for
            wait_until(lambda: m.stats().failures.get("http_503", 0) >= 1)
            server.fault = None
            server.publish(KEY, datafile(2))
            wait_until(lambda: (m.get_config() or load_config(datafile(0))).revision == "2")


def test_with_nothing_get_config_waits_once_then_answers_at_once() -> None:
    with datafile_server() as server:
        server.fault = Reply(503)
        with manager(server, blocking_timeout=2.0, update_interval=5, backoff_base=5) as m:
            started = time.monotonic()
            assert m.get_config() is None
            first = time.monotonic() - started
            started = time.monotonic()
            assert m.get_config() is None
            assert time.monotonic() - started < 0.05 and first < 2.5  # no wait the second time
            server.fault = None
            server.publish(KEY, datafile(3))
            assert m.poll_now().result is Result.CHANGED
            assert m.get_config() is not None


def test_an_authenticated_datafile_and_a_wrong_token() -> None:
    with datafile_server(token="s3cret") as server:
        server.publish(KEY, datafile(7))
        good = PollingConfigManager(
            KEY, datafile_access_token="s3cret", url_template=server.auth_template
        )
        with good:
            assert good.get_config() is not None
        bad = PollingConfigManager(
            KEY,
            datafile_access_token="wrong",
            url_template=server.auth_template,
            update_interval=0.2,
            backoff_base=0.01,
        )
        with bad:
            assert bad.get_config() is None
            time.sleep(0.5)
            stats = bad.stats()
        assert stats.failures.get("unauthorized", 0) <= 4  # an interval between tries: no storm
        assert "access_token" in (stats.last_error or "")


def test_the_cache_keeps_the_last_good_datafile_for_a_restart(tmp_path: Path) -> None:
    cache = tmp_path / "datafile.json"
    with datafile_server() as server:
        server.publish(KEY, datafile(12))
        with manager(server, datafile_cache=cache) as m:
            assert m.get_config() is not None
        assert stat.S_IMODE(cache.stat().st_mode) == 0o600
        server.fault = Reply(503)
        with manager(server, datafile_cache=cache, blocking_timeout=0) as restarted:
            assert (restarted.get_config() or load_config(datafile(0))).revision == "12"


def test_a_corrupt_cache_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "datafile.json"
    cache.write_text("{not json")
    with datafile_server() as server, caplog.at_level(logging.WARNING, logger="xpevents.config"):
        server.publish(KEY, datafile(2))
        with manager(server, datafile_cache=cache) as m:
            assert (m.get_config() or load_config(datafile(0))).revision == "2"
    assert any("cache" in r.getMessage() for r in caplog.records)


def test_a_slow_cdn_times_out() -> None:
    with datafile_server() as server:
        server.publish(KEY, datafile(1))
        server.fault = Reply(200, delay=1.0)
        with manager(server, timeout=0.2, blocking_timeout=3) as m:
            assert m.get_config() is None
            assert m.stats().failures.get("timeout", 0) >= 1


def test_options_are_checked_with_clear_messages() -> None:
    for options, name in (
        ({"update_interval": 0}, "update_interval"),
        ({"blocking_timeout": -1}, "blocking_timeout"),
        ({"datafile_access_token": ""}, "datafile_access_token"),
        ({"http_client": object()}, "http_client"),
        ({"url_template": "http://h/"}, "url_template"),
    ):
        with pytest.raises(ConfigError, match=name):
            PollingConfigManager(KEY, start=False, **options)
    with pytest.raises(ConfigError, match="sdk_key"):
        PollingConfigManager(start=False)


def test_decisions_see_one_revision_while_it_changes_many_times_a_second() -> None:
    """Threads read get_config() while the datafile changes every few milliseconds."""
    with datafile_server() as server:
        server.publish(KEY, datafile(1))
        with manager(server, update_interval=0.002, backoff_base=0.001) as m:
            assert m.get_config() is not None
            stop = threading.Event()
            seen: list[str] = []
            errors: list[BaseException] = []

            def reader() -> None:
                while not stop.is_set():
                    try:
                        config = m.get_config()
                        assert config is not None
                        assert config.experiments  # a whole config, never a half-built one
                        seen.append(config.revision)
                        time.sleep(0.0002)
                    except BaseException as exc:
                        errors.append(exc)

            readers = [threading.Thread(target=reader) for _ in range(3)]
            for t in readers:
                t.start()
            for revision in range(2, 40):
                server.publish(KEY, datafile(revision))
                time.sleep(0.01)
            stop.set()
            for t in readers:
                t.join()
        assert not errors
        revisions = [int(r) for r in seen]
        assert revisions == sorted(revisions)  # never back to an older one
        # many swaps while readers ran (a loaded machine polls less often than 500/s)
        assert m.stats().changes >= 3


def test_a_forked_child_polls_on_its_own() -> None:
    with datafile_server() as server:
        server.publish(KEY, datafile(1))
        with manager(server) as m:
            assert m.get_config() is not None
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child
                try:
                    os.close(read)
                    before = m.stats().fetches  # inherited from the parent
                    config = m.get_config()  # starts the child's own poller
                    time.sleep(0.5)
                    ok = config is not None and m.stats().fetches > before
                    os.write(write, b"ok" if ok else b"no")
                finally:
                    os._exit(0)
            os.close(write)
            answer = os.read(read, 2)
            os.waitpid(pid, 0)
        assert answer == b"ok"


# -- the other managers -------------------------------------------------------------------


def test_the_asyncio_poller() -> None:
    async def main() -> tuple[str | None, str | None, int]:
        with datafile_server() as server:
            server.publish(KEY, datafile(1))
            m = AsyncPollingConfigManager(
                KEY, url_template=server.template, update_interval=0.05, backoff_base=0.02
            )
            async with m:
                first = m.get_config()
                server.publish(KEY, datafile(2))
                for _ in range(200):
                    config = m.get_config()
                    if config is not None and config.revision == "2":
                        break
                    await asyncio.sleep(0.01)
                last = m.get_config()
                stats = m.stats()
            return (
                None if first is None else first.revision,
                None if last is None else last.revision,
                stats.changes,
            )

    assert asyncio.run(main()) == ("1", "2", 2)


def test_the_file_watcher(tmp_path: Path) -> None:
    path = tmp_path / "datafile.json"
    path.write_text(json.dumps(datafile(1)))
    with FileConfigManager(path, interval=0.02) as m:
        assert (m.get_config() or load_config(datafile(0))).revision == "1"
        path.write_text("{broken")
        wait_until(lambda: m.stats().failures.get("invalid_datafile", 0) >= 1)
        assert (m.get_config() or load_config(datafile(0))).revision == "1"
        replacement = tmp_path / "new.json"
        replacement.write_text(json.dumps(datafile(2)))
        os.replace(replacement, path)  # a deploy renames the new file into place
        wait_until(lambda: (m.get_config() or load_config(datafile(0))).revision == "2")


def test_every_manager_is_a_config_manager() -> None:
    static = StaticConfigManager(load_config(datafile(1)))
    assert isinstance(static, ConfigManager)
    assert static.stats().ready and static.get_config() is not None
    with datafile_server() as server:
        server.publish(KEY, datafile(1))
        for m in (
            manager(server),
            AsyncPollingConfigManager(KEY, url_template=server.template),
            FileConfigManager(FIXTURE, start=False),
        ):
            assert isinstance(m, ConfigManager)
            m.close()


def test_a_user_http_client_is_used_and_not_closed() -> None:
    with datafile_server() as server, httpx.Client(headers={"X-Mine": "1"}) as client:
        server.publish(KEY, datafile(1))
        with manager(server, http_client=client) as m:
            assert m.get_config() is not None
        assert server.requests[0].headers.get("X-Mine") == "1"
        assert not client.is_closed
