"""uuid4_str: RFC 4122 v4 format, uniqueness, and no repeats across forked workers."""

from __future__ import annotations

import os
import re
import select
import uuid

import pytest

from xpevents.events.uuids import uuid4_hex, uuid4_str

V4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_format_is_rfc4122_v4() -> None:
    for _ in range(2000):
        value = uuid4_str()
        assert V4.match(value), value
        parsed = uuid.UUID(value)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == value


def test_hex_form() -> None:
    value = uuid4_hex()
    assert len(value) == 32
    assert uuid.UUID(hex=value).version == 4


def test_unique_in_one_process() -> None:
    values = {uuid4_str() for _ in range(100_000)}
    assert len(values) == 100_000


def _fork_workers(workers: int, per_worker: int) -> list[list[str]]:
    """Fork ``workers`` children; each sends back ``per_worker`` uuids through a pipe."""
    uuid4_str()  # the parent has used its generator: the state children inherit is "warm"
    children: list[tuple[int, int]] = []
    for _ in range(workers):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.close(read_fd)
                data = "\n".join(uuid4_str() for _ in range(per_worker)).encode()
                view = memoryview(data)
                while view:
                    written = os.write(write_fd, view)
                    view = view[written:]
                os.close(write_fd)
            finally:
                os._exit(0)
        os.close(write_fd)
        children.append((pid, read_fd))
    results: list[list[str]] = []
    for pid, read_fd in children:
        chunks: list[bytes] = []
        while True:
            ready, _, _ = select.select([read_fd], [], [], 20.0)
            assert ready, "child did not answer in time"
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        results.append(b"".join(chunks).decode().split("\n"))
    return results


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_workers_never_repeat() -> None:
    results = _fork_workers(workers=6, per_worker=2000)
    parent = [uuid4_str() for _ in range(2000)]
    everything = [u for worker in results for u in worker] + parent
    assert all(len(worker) == 2000 for worker in results)
    assert all(V4.match(u) for u in everything)
    assert len(set(everything)) == len(everything)
    # the first uuid of every child differs: each reseeded rather than continuing the
    # parent's sequence
    assert len({worker[0] for worker in results}) == len(results)


def test_bytes_form_is_rfc4122_v4_and_unique() -> None:
    from xpevents.events.uuids import uuid4_bytes

    values = [uuid4_bytes() for _ in range(200_000)]  # spans three prefixes
    assert len(set(values)) == len(values)
    for value in values[::997]:
        text = value.decode()
        assert V4.match(text), text
        assert uuid.UUID(text).version == 4
    prefixes = {v[:19] for v in values}
    assert 3 <= len(prefixes) <= 5  # a new 60-bit prefix every 65,536 uuids


def test_bytes_prefix_differs_in_a_forked_child() -> None:
    from xpevents.events.uuids import uuid4_bytes

    parent = uuid4_bytes()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, uuid4_bytes())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 64)
    os.close(read)
    os.waitpid(pid, 0)
    assert child[:19] != parent[:19] and V4.match(child.decode())
