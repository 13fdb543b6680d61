"""``xpevents forward --spool sqlite:///...``: the forwarder also checkpoints the spool
its writers fill (WalBackfill), on a real file with a real subprocess."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from test_php_redis import forward_to
from xpevents.spool.sqlite import SqliteSpool


def test_forward_copies_the_log_its_writers_leave_into_the_database_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "app.db"
    writer = SqliteSpool(path, checkpoint_pages=1_000_000)  # an app that never checkpoints
    with socket.socket() as probe:  # a closed port: nothing leaves
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/v1/events"
    with forward_to(f"sqlite:///{path}?checkpoint_pages=1000000", dead, dead) as process:
        # appended once the forwarder is open (opening checkpoints what is there)
        before = path.stat().st_size
        now = time.time()
        for start in range(0, 2_000, 500):
            visitors = [b'{"v":"%0600d"}' % i for i in range(start, start + 500)]
            writer.append([(b"env", visitor) for visitor in visitors], now=now)
        assert Path(f"{path}-wal").stat().st_size > 1_000_000
        deadline = time.monotonic() + 30
        while path.stat().st_size <= before + 1_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size > before + 1_000_000, (before, path.stat().st_size)
    assert process.returncode == 0
    stats = writer.stats(now=time.time())  # "env" is no envelope: dead letters, none lost
    assert stats.depth + sum(stats.dead_letters.values()) == 2_000
    writer.close()
