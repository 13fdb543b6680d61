"""The official optimizely-sdk under gunicorn --preload (an SDK built before fork).

The WSGI module builds ``optimizely.Optimizely(...)`` at import, in the gunicorn master,
then 2 workers are forked. Three wirings:

* ``forwarding``: ``ForwardingEventProcessor(BatchDispatcher(...))``. No SDK thread;
  our dispatcher restarts its senders in each worker (``os.register_at_fork``): every
  event reaches the collector.
* ``default``: the SDK's own ``BatchEventProcessor``. Its "EventThread" was started in
  the master and does not exist in the workers: ``activate`` still returns a variation,
  the events pile up in the copied queue (then are dropped once it holds 1,000) and none
  reaches our dispatcher, so none is delivered. Behaviour of the official processor.
* ``default+post_fork``: the same, with a gunicorn ``post_fork`` hook that calls
  ``sdk.event_processor.start()`` in each worker: delivered again (the workaround if you
  must keep the official processor).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from xpevents.testing import CollectorHandle

GUNICORN = Path(sys.executable).parent / "gunicorn"
REQUESTS = 200  # each request: one activate + one track = 2 events

APP = textwrap.dedent(
    """
    import logging, os
    from optimizely import optimizely
    from optimizely.event.event_processor import ForwardingEventProcessor
    from xpevents.dispatch.batch import BatchDispatcher

    logging.getLogger("optimizely").setLevel(logging.CRITICAL)
    WIRING = os.environ["SDK_WIRING"]
    datafile = open(os.environ["SDK_DATAFILE"]).read()
    dispatcher = BatchDispatcher(endpoint=os.environ["SDK_ENDPOINT"], flush_interval=0.05)
    if WIRING == "forwarding":
        sdk = optimizely.Optimizely(datafile, event_dispatcher=dispatcher,
                                    event_processor=ForwardingEventProcessor(dispatcher))
    else:
        sdk = optimizely.Optimizely(datafile, event_dispatcher=dispatcher)

    def app(environ, start_response):
        user = environ.get("QUERY_STRING") or "anon"
        variation = sdk.activate("checkout_button_color", user)
        sdk.track("purchase", user)
        running = getattr(sdk.event_processor, "is_running", None)
        queued = getattr(getattr(sdk.event_processor, "event_queue", None), "qsize", int)()
        body = f"{os.getpid()} {variation} {running} {queued} {dispatcher.stats().calls}"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body.encode()]
    """
)

POST_FORK = textwrap.dedent(
    """
    def post_fork(server, worker):
        import sdkapp
        sdkapp.sdk.event_processor.start()  # the master's EventThread is not in the worker
    """
)


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def _serve_and_drive(
    tmp_path: Path, collector: CollectorHandle, datafile_path: Path, wiring: str
) -> list[list[str]]:
    """Start gunicorn --preload -w 2, send REQUESTS requests; return the response fields."""
    (tmp_path / "sdkapp.py").write_text(APP)
    command = [str(GUNICORN), "--preload", "-w", "2", "-b"]
    port = _free_port()
    command += [f"127.0.0.1:{port}"]
    if wiring == "default+post_fork":
        (tmp_path / "hooks.py").write_text(POST_FORK)
        command += ["-c", "hooks.py"]
    command += ["sdkapp:app"]
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "SDK_WIRING": wiring,
        "SDK_DATAFILE": str(datafile_path),
        "SDK_ENDPOINT": collector.base_url,
    }
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    answers: list[list[str]] = []
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/?warmup", trust_env=False)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        for i in range(REQUESTS):
            # a new connection per request spreads them over both workers
            response = httpx.get(f"http://127.0.0.1:{port}/?user-{i}", trust_env=False)
            answers.append(response.text.split())
        time.sleep(1.0)  # flush_interval 0.05 s: the workers' senders have delivered
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stderr is not None:
            process.stderr.close()
    return answers


needs_gunicorn = pytest.mark.skipif(
    shutil.which("gunicorn", path=str(GUNICORN.parent)) is None, reason="gunicorn not installed"
)


@needs_gunicorn
@pytest.mark.parametrize("wiring", ["forwarding", "default+post_fork"])
def test_gunicorn_preload_delivers_every_event(
    collector: CollectorHandle, datafile_path: Path, tmp_path: Path, wiring: str
) -> None:
    answers = _serve_and_drive(tmp_path, collector, datafile_path, wiring)
    assert len({pid for pid, *_ in answers}) == 2  # both workers served
    assert all(variation != "None" for _, variation, *_ in answers)
    expected = 2 * (REQUESTS + 1)  # warmup included
    stats = collector.wait_for(unique_events=expected, timeout=20)
    assert stats["unique_events"] == expected and stats["duplicates"] == 0
    if wiring == "forwarding":
        assert all(running == "None" for _, _, running, *_ in answers)  # no SDK thread
    else:
        assert all(running == "True" for _, _, running, *_ in answers)


@needs_gunicorn
def test_gunicorn_preload_default_wiring_delivers_nothing_from_workers(
    collector: CollectorHandle, datafile_path: Path, tmp_path: Path
) -> None:
    """Documented behaviour of the official BatchEventProcessor after fork: its thread
    is gone, activate() still answers, nothing is handed to the dispatcher."""
    answers = _serve_and_drive(tmp_path, collector, datafile_path, "default")
    assert len({pid for pid, *_ in answers}) == 2
    assert all(variation != "None" for _, variation, *_ in answers)  # callers see no error
    assert all(running == "False" for _, _, running, *_ in answers)  # EventThread is gone
    assert max(int(queued) for *_, queued, _ in answers) > 100  # piling up in its queue
    assert all(calls == "0" for *_, calls in answers)  # never reached our dispatcher
    time.sleep(0.5)
    assert collector.stats()["unique_events"] == 0  # every event lost
