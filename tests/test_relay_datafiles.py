"""The relay's datafile cache on 127.0.0.1: hit, miss, refresh, ETag/304 and
If-Modified-Since, CDN down (last good copy), unknown keys, the disk copy, the auth path."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from xpevents.relay.app import Relay, RelaySettings
from xpevents.relay.server import RelayServer
from xpevents.spool.memory import MemorySpool

from servers import DatafileServer, Reply, datafile_server, scripted_server

FIXTURE = Path(__file__).parent / "fixtures" / "datafile.json"
KEY = "RelayKey1"


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


@contextmanager
def relay(cdn: DatafileServer, **settings: Any) -> Iterator[tuple[Relay, httpx.Client]]:
    with scripted_server() as events:
        options: dict[str, Any] = {
            "upstream": events.url,
            "upstream_eu": events.url,
            "sdk_keys": (KEY,),
            "datafile_upstream": cdn.base_url,
            "datafile_interval": 0.05,
            "shutdown_timeout": 1,
            **settings,
        }
        service = Relay(MemorySpool(1000, "drop_newest"), RelaySettings(**options))
        with (
            RelayServer(service, port=0) as server,
            httpx.Client(base_url=server.url, trust_env=False, timeout=10) as http,
        ):
            yield service, http


def upstream_gets(cdn: DatafileServer, key: str = KEY) -> int:
    return sum(1 for r in cdn.requests if r.path.endswith(f"/{key}.json"))


def test_hit_miss_refresh_and_304() -> None:
    with datafile_server() as cdn:
        cdn.publish(KEY, datafile(1))
        with relay(cdn) as (service, http):
            first = http.get(f"/datafiles/{KEY}.json")
            assert first.status_code == 200 and first.json()["revision"] == "1"
            etag, modified = first.headers["etag"], first.headers["last-modified"]
            assert (
                http.get(f"/datafiles/{KEY}.json", headers={"If-None-Match": etag}).status_code
                == 304
            )
            # the PHP SDK's conditional request
            since = {"If-Modified-Since": modified}
            assert http.get(f"/datafiles/{KEY}.json", headers=since).status_code == 304
            before = upstream_gets(cdn)
            for _ in range(200):
                assert http.get(f"/datafiles/{KEY}.json").status_code == 200
            assert upstream_gets(cdn) - before < 100  # answered from the cache
            cdn.publish(KEY, datafile(2))
            wait_until(lambda: http.get(f"/datafiles/{KEY}.json").json()["revision"] == "2")
            fresh = http.get(f"/datafiles/{KEY}.json", headers={"If-None-Match": etag})
            assert fresh.status_code == 200 and fresh.headers["etag"] != etag
            conditional = [r for r in cdn.requests if "If-None-Match" in r.headers]
            assert conditional  # the relay polls with conditional requests
            assert service.datafiles.stats()[KEY]["revision"] == "2"


def test_unknown_keys_are_404_and_never_fetched() -> None:
    with datafile_server() as cdn:
        cdn.publish("other", datafile(1))
        with relay(cdn) as (_, http):
            response = http.get("/datafiles/other.json")
            assert response.status_code == 404 and "--sdk-key" in response.json()["error"]
            assert http.get("/datafiles/auth/other.json").status_code == 404
            time.sleep(0.1)
        assert upstream_gets(cdn, "other") == 0


def test_the_last_good_copy_is_served_while_the_cdn_is_down_or_lies() -> None:
    with datafile_server() as cdn:
        cdn.publish(KEY, datafile(3))
        with relay(cdn) as (service, http):
            assert http.get(f"/datafiles/{KEY}.json").json()["revision"] == "3"
            for fault in (Reply(503), Reply(200, {}, b"<html>oops</html>"), Reply(200, {}, b"{")):
                cdn.fault = fault
                failures = service.datafiles.stats()[KEY]["failures"]
                wait_until(lambda f=failures: service.datafiles.stats()[KEY]["failures"] > f)
                got = http.get(f"/datafiles/{KEY}.json")
                assert got.status_code == 200 and got.json()["revision"] == "3"
            cdn.fault = None
            cdn.publish(KEY, datafile(4))
            wait_until(lambda: http.get(f"/datafiles/{KEY}.json").json()["revision"] == "4")


def test_nothing_cached_and_the_cdn_down_is_503_then_200() -> None:
    with datafile_server() as cdn:
        cdn.fault = Reply(503)
        with relay(cdn) as (_, http):
            down = http.get(f"/datafiles/{KEY}.json")
            assert down.status_code == 503 and down.headers["retry-after"] == "1"
            cdn.fault = None
            cdn.publish(KEY, datafile(1))
            wait_until(lambda: http.get(f"/datafiles/{KEY}.json").status_code == 200)


def test_the_disk_copy_serves_a_restarted_relay(tmp_path: Path) -> None:
    directory = tmp_path / "datafiles"
    with datafile_server() as cdn:
        cdn.publish(KEY, datafile(5))
        with relay(cdn, datafile_cache_dir=str(directory)) as (_, http):
            assert http.get(f"/datafiles/{KEY}.json").json()["revision"] == "5"
            wait_until(lambda: (directory / f"{KEY}.json").exists())
        assert stat.S_IMODE((directory / f"{KEY}.json").stat().st_mode) == 0o600
        cdn.fault = Reply(503)
        with relay(cdn, datafile_cache_dir=str(directory)) as (_, http):
            assert http.get(f"/datafiles/{KEY}.json").json()["revision"] == "5"


def test_the_auth_path() -> None:
    with datafile_server(token="s3cret") as cdn:
        cdn.publish(KEY, datafile(6))
        with relay(cdn) as (_, http):
            path = f"/datafiles/auth/{KEY}.json"
            assert http.get(path).status_code == 401
            wrong = http.get(path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 403
            good = {"Authorization": "Bearer s3cret"}
            assert http.get(path, headers=good).json()["revision"] == "6"
            auth_gets = sum(1 for r in cdn.requests if "/auth/" in r.path)
            for _ in range(20):
                assert http.get(path, headers=good).status_code == 200
            assert sum(1 for r in cdn.requests if "/auth/" in r.path) - auth_gets < 20
            assert http.get(path, headers={"Authorization": "Bearer nope"}).status_code == 403
            cdn.publish(KEY, datafile(7))  # refreshed with the token it learned
            wait_until(lambda: http.get(path, headers=good).json()["revision"] == "7")
