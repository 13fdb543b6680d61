"""Hostile upstreams on 127.0.0.1: raw sockets that answer the way a broken server does.

``hostile_server(kind)`` yields a :class:`HostileServer` whose ``url`` answers every
request in one of these ways:

* ``"trickle"``: a valid answer sent one byte every ``interval`` seconds (each read gets
  a byte in time, so only a total deadline ends it);
* ``"html200"``: ``200 OK`` with an HTML body (a captive portal, a CDN error page);
* ``"redirect"``: ``302 Found`` to another path of the same server;
* ``"413"``: ``413 Payload Too Large`` to every request, whatever its size;
* ``"garbage"``: bytes that are not HTTP at all, then the connection is closed.

It records how many requests it read and, per connection, how long the client kept it
open (``held``), so a test can tell that a sender let go.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_HTML = b"<html><body>Please log in</body></html>"
_ANSWERS = {
    "html200": b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
    + str(len(_HTML)).encode()
    + b"\r\n\r\n"
    + _HTML,
    "redirect": b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n",
    "413": b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n",
    "garbage": b"\x00\xffSSH-2.0-OpenSSH_9.0 not http at all\r\n\r\n",
}
_TRICKLED = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n" + b"X-Pad: " + b"." * 4000


class HostileServer:
    def __init__(self, kind: str, interval: float = 0.2, trickle_for: float = 60.0) -> None:
        if kind not in _ANSWERS and kind != "trickle":
            raise ValueError(f"unknown hostile server kind {kind!r}")
        self.kind = kind
        self.interval = interval
        self.trickle_for = trickle_for
        self.requests = 0
        self.held: list[float] = []
        self._stop = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        port = self._listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.url = f"{self.base_url}/v1/events"
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> bool:
        """Read one request (headers and a Content-Length body); False at EOF."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            body += chunk
        with self._lock:
            self.requests += 1
        return True

    def _serve(self, conn: socket.socket) -> None:
        opened = time.monotonic()
        conn.settimeout(1.0)
        try:
            while not self._stop.is_set():
                try:
                    if not self._read_request(conn):
                        break
                except TimeoutError:
                    continue
                if self.kind == "trickle":
                    self._trickle(conn)
                    break
                conn.sendall(_ANSWERS[self.kind])
                if self.kind == "garbage":
                    break
        except OSError:
            pass
        finally:
            conn.close()
            with self._lock:
                self.held.append(time.monotonic() - opened)

    def _trickle(self, conn: socket.socket) -> None:
        """One byte every ``interval`` s until the client hangs up or ``trickle_for`` ends."""
        ends = time.monotonic() + self.trickle_for
        for byte in _TRICKLED:
            if self._stop.is_set() or time.monotonic() > ends:
                return
            conn.sendall(bytes([byte]))
            time.sleep(self.interval)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._listener.close()


@contextmanager
def hostile_server(kind: str, **options: float) -> Iterator[HostileServer]:
    server = HostileServer(kind, **options)
    try:
        yield server
    finally:
        server.close()
