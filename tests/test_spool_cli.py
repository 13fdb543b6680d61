"""``xpevents spool stats|replay|purge`` on SQLite and Redis spools."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from xpevents.spool.base import Spool
from xpevents.spool.cli import spool_command
from xpevents.spool.redis import RedisSpool
from xpevents.spool.sqlite import SqliteSpool


@pytest.fixture(params=["sqlite", "redis"])
def spool_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Spool]]:
    spool: Spool
    if request.param == "sqlite":
        path = tmp_path / "spool.db"
        spool = SqliteSpool(path)
        url = f"sqlite:///{path}"
    else:
        url = f"redis://127.0.0.1:6379/9?stream=cli:{uuid.uuid4().hex}"
        spool = RedisSpool.from_url(url)
    now = time.time()
    spool.append([(b"env", f'{{"i":{i}}}'.encode()) for i in range(6)], now=now - 90)
    records = spool.claim(max_records=3, max_bytes=1 << 20, lease=30, now=now)
    spool.dead_letter([records[0].id, records[1].id], reason="http_400", now=now)
    spool.dead_letter([records[2].id], reason="too_large", now=now)
    (retrying,) = spool.claim(max_records=1, max_bytes=1 << 20, lease=30, now=now)
    spool.retry([retrying.id], attempts=1, first_attempt_at=now, next_attempt_at=now + 3600)
    yield url, spool
    if isinstance(spool, RedisSpool):
        spool.delete_all()
    spool.close()


def test_stats_table_and_json(spool_url: tuple[str, Spool]) -> None:
    url, _ = spool_url
    runner = CliRunner()
    result = runner.invoke(spool_command, ["stats", url, "--dead-letters", "5"])
    assert result.exit_code == 0, result.output
    assert "depth" in result.output
    assert "age of the oldest event" in result.output
    assert "http_400" in result.output and "too_large" in result.output
    result = runner.invoke(spool_command, ["stats", url, "--json"])
    data = json.loads(result.output)
    assert data["depth"] == 3
    assert data["dead_letters"] == {"http_400": 2, "too_large": 1}
    assert 85 < data["oldest_age"] < 200


def test_replay_and_purge(spool_url: tuple[str, Spool]) -> None:
    url, spool = spool_url
    runner = CliRunner()
    result = runner.invoke(spool_command, ["replay", url, "--dead-letter", "--reason", "http_400"])
    assert result.exit_code == 0, result.output
    assert "2 dead letter(s)" in result.output
    assert spool.stats(now=time.time()).depth == 5
    result = runner.invoke(spool_command, ["replay", url])
    assert result.exit_code == 0, result.output
    assert "1 record(s) waiting for a retry made due now" in result.output
    result = runner.invoke(spool_command, ["purge", url])
    assert result.exit_code != 0
    assert "--dead-letter" in result.output
    result = runner.invoke(spool_command, ["purge", url, "--dead-letter", "--dry-run"])
    assert result.exit_code == 0 and "1 dead letter(s) would be purged" in result.output
    result = runner.invoke(spool_command, ["purge", url, "--dead-letter"], input="n\n")
    assert result.exit_code == 1 and "Delete 1 dead letter(s) for good?" in result.output
    assert sum(spool.stats(now=time.time()).dead_letters.values()) == 1  # kept
    result = runner.invoke(spool_command, ["purge", url, "--dead-letter"], input="y\n")
    assert result.exit_code == 0, result.output
    assert "1 dead letter(s) purged" in result.output
    assert dict(spool.stats(now=time.time()).dead_letters) == {}


def test_errors_are_clear(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(spool_command, ["stats", f"sqlite:///{tmp_path}/absent.db"])
    assert result.exit_code == 1
    assert "no such file" in result.output
    assert not (tmp_path / "absent.db").exists()
    result = runner.invoke(spool_command, ["stats", "ftp://nowhere"])
    assert result.exit_code == 1
    assert "expected" in result.output
    result = runner.invoke(spool_command, ["stats", "redis://127.0.0.1:1/0?stream=x"])
    assert result.exit_code == 1
    assert "cannot reach Redis" in result.output
    result = runner.invoke(spool_command, ["replay", "x.db", "--reason", "r"])
    assert result.exit_code == 2
