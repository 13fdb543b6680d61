"""The floor of an asyncio HTTP server on this box: a bare protocol that answers 204.

It parses only what it must (the end of the headers and ``Content-Length``) and writes
one fixed ``204`` per request, with no validation, no spool and no framework. Driven by
the same ``wrk`` as the relay, its p99 is what any Python asyncio server shares with the
generator on two cores at saturation: the relay's figures sit above it, never below.

    python -m bench._http_floor PORT     # serve on 127.0.0.1:PORT (0: a free port)

Prints ``listening on http://127.0.0.1:PORT`` once it accepts connections.
:func:`run_floor` runs it in a subprocess for the duration of a ``with`` block.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from bench._common import listening_module

__all__ = ["run_floor"]

_ANSWER = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"


class _Bare(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = 0
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            assert self.transport is not None
            self.transport.write(_ANSWER)


async def _serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Bare, "127.0.0.1", port)
    bound = server.sockets[0].getsockname()[1]
    print(f"listening on http://127.0.0.1:{bound}", flush=True)
    await server.serve_forever()


def run_floor() -> contextlib.AbstractContextManager[str]:
    """The base URL of a bare 204 server in a subprocess, stopped at the end."""
    return listening_module("bench._http_floor", "0", what="the floor server")


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
