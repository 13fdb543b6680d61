"""Run ``wrk`` (the HTTP load generator of Debian's ``wrk`` package) and read its figures.

The services' benchmarks (relay, collector) drive them with ``wrk`` rather than a
Python client, which would measure itself as much as the service. The Lua script is the
caller's: a fixed body (``fixed_body_script``) or one that makes every request's body
distinct (``distinct_bodies_script``: the collector de-duplicates events).
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import tempfile
import time

__all__ = ["distinct_bodies_script", "fixed_body_script", "run_wrk"]

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
PLACEHOLDER = "RRRRRRRRRR"
"""Ten characters of a body template that ``distinct_bodies_script`` replaces with an
id unique per request (two digits of wrk thread, eight of counter)."""


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not match:
        raise ValueError(f"unreadable wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def fixed_body_script(body: str) -> str:
    """Lua: every request POSTs ``body`` as JSON."""
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )


def distinct_bodies_script(template: str) -> str:
    """Lua: each request POSTs ``template`` with every :data:`PLACEHOLDER` replaced by
    the same id, unique to the request (pre-split once per thread; one concat each)."""
    if PLACEHOLDER not in template:
        raise ValueError(f"the template has no {PLACEHOLDER} to make requests distinct")
    return f"""
local threads = {{}}
local parts = {{}}
local counter = 0
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
function init(args)
  local template = {json.dumps(template)}
  local start = 1
  while true do
    local i, j = string.find(template, "{PLACEHOLDER}", start, true)
    if not i then
      table.insert(parts, string.sub(template, start))
      break
    end
    table.insert(parts, string.sub(template, start, i - 1))
    start = j + 1
  end
end
function request()
  counter = counter + 1
  local id = string.format("%02d%08d", tid, counter)
  return wrk.format("POST", nil, {{["Content-Type"] = "application/json"}},
                    table.concat(parts, id))
end
"""


def run_wrk(
    url: str, clients: int, seconds: float, script: str, threads: int = 0
) -> dict[str, float]:
    """Run wrk with ``script``: requests/s, p50/p99 in ms, requests and non-2xx counts,
    and wrk's own CPU seconds per wall second (``generator_cpu_share``)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        done = subprocess.run(
            [
                "wrk",
                f"-t{threads or min(clients, 4)}",
                f"-c{clients}",
                f"-d{seconds:g}s",
                "--latency",
                "-s",
                handle.name,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        )
    finally:
        os.unlink(handle.name)
    out = done.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "rps": rps,
        "requests": float(count),
        "p50": p50,
        "p99": p99,
        "non_2xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
        "generator_cpu_share": cpu / (time.perf_counter() - started),
    }
