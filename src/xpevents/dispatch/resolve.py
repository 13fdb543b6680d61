"""Host names resolved once and cached, so that a total deadline bounds DNS too.

``getaddrinfo`` cannot be interrupted: a request that resolves its host in the caller's
thread can outlive any timeout while the system resolver waits on a dead DNS server.
:class:`HostCache` resolves a name in a short-lived daemon thread and waits for it only
as long as the caller may; the answer is kept for ``ttl`` seconds, so a hit (and every
request on a keep-alive connection, which resolves nothing) costs no thread at all.
Concurrent misses for one name share one lookup, so a hanging resolver holds at most
one thread per name. IP literals and ``localhost`` are never looked up.

The addresses only choose where to connect: TLS still verifies the original host name
(the HTTP stack passes it as ``server_hostname``), and the ``Host`` header is unchanged.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
import threading
import time
from collections.abc import Callable

__all__ = ["DEFAULT_DNS_TTL", "HostCache", "Resolve", "system_resolve"]

DEFAULT_DNS_TTL = 60.0
"""Seconds a resolved host's addresses are reused for new connections."""

Resolve = Callable[[str, int], list[str]]
"""``resolve(host, port)``: the host's addresses, in the order to try them."""


def system_resolve(host: str, port: int) -> list[str]:
    """The system resolver's addresses for ``host`` (``getaddrinfo``), without repeats."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def needs_no_lookup(host: str) -> bool:
    """True for an IP literal or ``localhost``: connecting needs no DNS."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class HostCache:
    """Addresses of host names, looked up at most once per ``ttl`` seconds.

    Args:
        ttl: seconds an answer is reused; 0 looks the name up for every new connection
            (still bounded by the caller's timeout).
        resolve: the lookup; default :func:`system_resolve` (looked up at each call).
    """

    def __init__(self, ttl: float = DEFAULT_DNS_TTL, resolve: Resolve | None = None) -> None:
        self.ttl = ttl
        self._resolve = resolve
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._pending: dict[tuple[str, int], concurrent.futures.Future[list[str]]] = {}

    def addresses(self, host: str, port: int, timeout: float | None) -> list[str]:
        """Where to connect for ``host``; waits at most ``timeout`` seconds for a lookup.

        Raises:
            TimeoutError: the lookup did not answer in time (it goes on, and its answer
                is cached for the next caller).
            OSError: the lookup failed (``socket.gaierror``).
        """
        if needs_no_lookup(host):
            return [host]
        key = (host.lower(), port)
        answer = self._answers.get(key)
        if answer is not None and answer[0] > time.monotonic():
            return answer[1]
        try:
            return self._lookup(key, host).result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(
                f"resolving {host!r} took longer than the {timeout:g} s left"
            ) from None

    def forget(self, host: str, port: int) -> None:
        """Drop the cached answer for ``host`` (none of its addresses could be reached)."""
        self._answers.pop((host.lower(), port), None)

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's lookup threads do not exist here."""
        self._lock = threading.Lock()
        self._pending = {}

    def _lookup(self, key: tuple[str, int], host: str) -> concurrent.futures.Future[list[str]]:
        with self._lock:
            future = self._pending.get(key)
            if future is None:
                future = concurrent.futures.Future()
                self._pending[key] = future
                threading.Thread(
                    target=self._run, args=(key, host, future), name="xpevents-resolve", daemon=True
                ).start()
        return future

    def _run(
        self, key: tuple[str, int], host: str, future: concurrent.futures.Future[list[str]]
    ) -> None:
        try:
            found = (self._resolve or system_resolve)(host, key[1])
            if not found:
                raise socket.gaierror(f"no address for {host!r}")
        except BaseException as exc:
            with self._lock:
                self._pending.pop(key, None)
            future.set_exception(exc)
            return
        with self._lock:
            if self.ttl > 0:
                self._answers[key] = (time.monotonic() + self.ttl, found)
            self._pending.pop(key, None)
        future.set_result(found)
