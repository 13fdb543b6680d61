"""A counting sink for the throughput benchmarks: the event API's POST, nothing else.

``xpevents collector`` stores every event (SQLite, flattened rows for the dashboard);
on this 2-core box that tops out near 30,000 visitors/s, below what a dispatcher can
send, so a throughput figure measured against it would measure the collector. This
sink parses each body (msgspec, only the event uuids), counts unique and duplicate
events, and answers 204, optionally after ``latency_ms`` (without holding other
connections up). It runs in its own process; the handle has the collector handle's
``base_url``, ``reset()``, ``stats()`` and ``control()``.

    python -m bench._sink [--latency-ms N]     # prints "listening on http://..."
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import msgspec

from bench._common import listening_module


class _Event(msgspec.Struct):
    uuid: str = ""


class _Snapshot(msgspec.Struct):
    events: list[_Event] = []


class _Visitor(msgspec.Struct):
    snapshots: list[_Snapshot] = []


class _Payload(msgspec.Struct):
    visitors: list[_Visitor] = []


_decode = msgspec.json.Decoder(_Payload).decode


class _State:
    def __init__(self, latency_ms: float) -> None:
        self.latency_ms = latency_ms
        self.seen: set[str] = set()
        self.duplicates = 0
        self.requests = 0
        self.bytes = 0
        self.bad = 0

    def take(self, body: bytes) -> None:
        self.requests += 1
        self.bytes += len(body)
        try:
            payload = _decode(body)
        except msgspec.DecodeError:
            self.bad += 1
            return
        seen = self.seen
        for visitor in payload.visitors:
            for snapshot in visitor.snapshots:
                for event in snapshot.events:
                    if event.uuid in seen:
                        self.duplicates += 1
                    else:
                        seen.add(event.uuid)

    def stats(self) -> dict[str, Any]:
        return {
            "unique_events": len(self.seen),
            "duplicates": self.duplicates,
            "requests": self.requests,
            "bytes_received": self.bytes,
            "bad_requests": self.bad,
            "latency_ms": self.latency_ms,
        }


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: _State) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            line, _, rest = head.partition(b"\r\n")
            method, path = line.split(b" ")[:2]
            length = 0
            for header in rest.split(b"\r\n"):
                name, _, value = header.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            answer = b""
            if method == b"POST" and path.endswith(b"/events"):
                state.take(body)
                if state.latency_ms:
                    await asyncio.sleep(state.latency_ms / 1000)
                status = b"204 No Content"
            elif path == b"/reset":
                state.seen.clear()
                state.duplicates = state.requests = state.bad = state.bytes = 0
                status = b"204 No Content"
            elif path == b"/stats":
                status, answer = b"200 OK", json.dumps(state.stats()).encode()
            else:
                status = b"404 Not Found"
            writer.write(
                b"HTTP/1.1 %b\r\nContent-Length: %d\r\nContent-Type: application/json\r\n\r\n%b"
                % (status, len(answer), answer)
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def _main(latency_ms: float) -> None:
    state = _State(latency_ms)
    server = await asyncio.start_server(
        lambda r, w: _serve(r, w, state), "127.0.0.1", 0, limit=8 * 1024 * 1024
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


class SinkHandle:
    """The running sink: the collector handle's calls the benchmarks use."""

    def __init__(self, base_url: str, latency_ms: float) -> None:
        import httpx

        self.base_url = base_url
        self._latency_ms = latency_ms
        self._http = httpx.Client(base_url=base_url, timeout=10, trust_env=False)

    def reset(self) -> None:
        self._http.post("/reset")

    def stats(self) -> dict[str, Any]:
        return dict(self._http.get("/stats").json())

    def control(self) -> dict[str, Any]:
        return {"latency_ms": self._latency_ms}

    def close(self) -> None:
        self._http.close()


@contextlib.contextmanager
def run_sink(latency_ms: float = 0) -> Iterator[SinkHandle]:
    """Run the counting sink in a subprocess for the duration of the block."""
    args = ("--latency-ms", str(latency_ms))
    with listening_module("bench._sink", *args, what="the counting sink") as base_url:
        handle = SinkHandle(base_url, latency_ms)
        try:
            yield handle
        finally:
            handle.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=0)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args().latency_ms))
