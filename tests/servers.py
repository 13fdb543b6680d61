"""Small real servers on 127.0.0.1 for tests that need scripted answers.

``ScriptedServer`` answers each request with the next scripted response (then with the
default one) and records what it received; ``SilentServer`` accepts connections and
never answers. Both bind ephemeral ports and stop on exit.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class ScriptedServer:
    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.default = Reply()
        self.judge: Callable[[bytes], Reply | None] | None = None
        """Answers from the body when it returns a reply (before the script)."""
        self.received: list[Received] = []
        self.connections = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                outer.connections += 1

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.received.append(
                    Received(self.command, self.path, dict(self.headers.items()), body)
                )
                judged = outer.judge(body) if outer.judge is not None else None
                if judged is not None:
                    reply = judged
                else:
                    reply = outer.script.popleft() if outer.script else outer.default
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_POST = _handle
            do_GET = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/v1/events"
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def scripted_server(*replies: Reply) -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    server.script.extend(replies)
    try:
        yield server
    finally:
        server.close()


@contextmanager
def silent_server() -> Iterator[str]:
    """A port that accepts connections and never says a word; yields its URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1/events"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()


def closed_port_url() -> str:
    """A loopback URL where nothing listens: connections are refused at once."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/v1/events"


class DatafileServer:
    """Serves datafiles by SDK key like the CDN: ETag, Last-Modified, 304; faults on demand.

    ``publish(key, datafile)`` changes what is served. ``fault`` (a Reply) answers every
    request instead, until set back to ``None``. ``token`` requires
    ``Authorization: Bearer <token>`` on ``/datafiles/auth/<key>.json``.
    """

    def __init__(self, token: str | None = None) -> None:
        self.files: dict[str, tuple[bytes, str, str]] = {}
        self.fault: Reply | None = None
        self.token = token
        self.requests: list[Received] = []
        self._versions = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests.append(Received("GET", self.path, dict(self.headers.items()), b""))
                status, headers, body = outer.answer(self.path, self.headers)
                if outer.fault is not None and outer.fault.delay:
                    time.sleep(outer.fault.delay)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.template = self.base_url + "/datafiles/{sdk_key}.json"
        self.auth_template = self.base_url + "/datafiles/auth/{sdk_key}.json"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def publish(self, key: str, datafile: dict[str, object] | bytes) -> None:
        import json

        body = datafile if isinstance(datafile, bytes) else json.dumps(datafile).encode()
        self._versions += 1
        modified = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(1e9 + self._versions))
        self.files[key] = (body, f'"v{self._versions}"', modified)

    def answer(self, path: str, headers: object) -> tuple[int, dict[str, str], bytes]:
        if self.fault is not None:
            return self.fault.status, self.fault.headers, self.fault.body
        get = headers.get  # type: ignore[attr-defined]
        key = path.rsplit("/", 1)[-1].removesuffix(".json")
        if path.startswith("/datafiles/auth/") and get("Authorization") != f"Bearer {self.token}":
            return 403, {}, b'{"error":"forbidden"}'
        if key not in self.files:
            return 404, {}, b"not found"
        body, etag, modified = self.files[key]
        if get("If-None-Match") == etag:
            return 304, {"ETag": etag}, b""
        return 200, {"ETag": etag, "Last-Modified": modified}, body

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def datafile_server(token: str | None = None) -> Iterator[DatafileServer]:
    server = DatafileServer(token)
    try:
        yield server
    finally:
        server.close()
