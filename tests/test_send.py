"""The send state machine on its own: a recording spool, a fake clock, no threads, no sockets.

Planner (when a batch is due, how a claim becomes request bodies), Settler (what an
answer means for the visitors), Circuits (per-URL breaker) and the classifier of answers
(send.outcome) are driven directly with ``now`` values chosen by the test.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from xpevents.errors import DispatchError
from xpevents.send.circuit import PROBE_WAIT, Circuits
from xpevents.send.endpoint import EndpointRouter
from xpevents.send.outcome import Outcome, Verdict, of_error, of_response
from xpevents.send.planner import IDLE_POLL, Planner, Request, halves
from xpevents.send.retry import GiveUp, RetryPolicy
from xpevents.send.settle import Settler
from xpevents.spool.base import Claim, SpoolRecord, SpoolStats
from xpevents.spool.envelope import API_MAX_BYTES, batch_envelope, parse_envelope
from xpevents.spool.memory import MemorySpool
from xpevents.stats import StatsRecorder

URL = "https://logx.optimizely.com/v1/events"
HEAD = {"account_id": "1", "project_id": "2", "revision": "3", "visitors": []}
ENVELOPE = batch_envelope(URL, HEAD)
T0 = 1_700_000_000.0
RETRY = RetryPolicy(
    max_attempts=None, backoff_base=1.0, backoff_max=8.0, max_retry_after=60.0, max_retry_age=600.0
)


def visitor(n: int, size: int = 20) -> bytes:
    return b'{"visitor_id":"' + str(n).encode() + b'","pad":"' + b"x" * size + b'"}'


@dataclass
class RecordingSpool:
    """A Spool that records what the send stage asks of it."""

    url: str = "fake://"
    durable: bool = False
    acked: list[list[int | str]] = field(default_factory=list)
    retried: list[tuple[list[int | str], int, float, float]] = field(default_factory=list)
    dead: list[tuple[list[int | str], str, float]] = field(default_factory=list)
    dead_attempts: list[int | None] = field(default_factory=list)

    def append(self, entries: Sequence[tuple[bytes, bytes]], *, now: float) -> None:
        raise AssertionError("the send stage never appends")

    def claim(
        self, *, max_records: int, max_bytes: int, lease: float, now: float
    ) -> list[SpoolRecord]:
        return []

    def ack(self, ids: Sequence[int | str]) -> None:
        self.acked.append(list(ids))

    def retry(
        self,
        ids: Sequence[int | str],
        *,
        attempts: int,
        first_attempt_at: float,
        next_attempt_at: float,
    ) -> None:
        self.retried.append((list(ids), attempts, first_attempt_at, next_attempt_at))

    def dead_letter(
        self,
        ids: Sequence[int | str],
        *,
        reason: str,
        now: float,
        attempts: int | None = None,
    ) -> None:
        self.dead.append((list(ids), reason, now))
        self.dead_attempts.append(attempts)

    def next_due_at(self, *, now: float) -> float | None:
        return None

    def stats(self, *, now: float) -> SpoolStats:
        return SpoolStats()

    def dead_letters(self, *, limit: int = 100) -> list[Any]:
        return []

    def replay_dead_letters(self, *, reason: str | None = None, now: float) -> int:
        return 0

    def purge_dead_letters(self, *, reason: str | None = None) -> int:
        return 0

    def close(self) -> None:
        return None


@dataclass
class Answer:
    """A response as the classifier reads it."""

    status_code: int
    headers: Mapping[str, str] = field(default_factory=dict)
    text: str = ""


def claim(n: int, *, size: int = 20, attempts: int = 0, first: float | None = None) -> Claim:
    ids: list[int | str] = list(range(1, n + 1))
    return Claim(ENVELOPE, ids, [visitor(i, size) for i in ids], attempts, first, [T0] * n)


def request(n: int = 3, *, attempts: int = 0, first: float | None = None) -> Request:
    c = claim(n, attempts=attempts, first=first)
    envelope = parse_envelope(ENVELOPE)
    req = Request(envelope, c.ids, c.visitors, c, envelope.body(c.visitors))
    req.content = req.body
    return req


class Machine:
    """A settler wired to a recording spool, with everything it reports collected."""

    def __init__(self, *, retry: RetryPolicy = RETRY, threshold: int = 3) -> None:
        self.spool = RecordingSpool()
        self.recorder = StatsRecorder()
        self.circuits = Circuits(threshold, retry, rng=random.Random(7))
        self.delivered: list[list[bytes]] = []
        self.failures: list[DispatchError] = []
        self.settled = 0
        self.settler = Settler(
            self.spool,
            self.recorder,
            retry,
            self.circuits,
            on_success=self.delivered.append,
            on_failure=lambda visitors, error: self.failures.append(error),
            settled=self._count,
        )

    def _count(self) -> None:
        self.settled += 1

    def answer(self, req: Request, status: int, now: float, **headers: str) -> list[Request]:
        if req.content is None:
            req.content = req.body
        self.settler.begin(req, now)
        verdict = of_response(Answer(status, headers, f"body of {status}"), now=now)
        return self.settler.settle(req, verdict, now)


# -- the classifier ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 202, 204, 299])
def test_2xx_is_delivered(status: int) -> None:
    verdict = of_response(Answer(status), now=T0)
    assert verdict.outcome is Outcome.DELIVERED
    assert verdict.status == status


def test_a_transient_answer_carries_retry_after_in_seconds_or_as_a_date() -> None:
    assert of_response(Answer(503, {"retry-after": "7"}), now=T0).retry_after == 7.0
    dated = of_response(Answer(429, {"retry-after": "Tue, 14 Nov 2023 22:13:40 GMT"}), now=T0)
    assert dated.retry_after == pytest.approx(20.0)
    assert dated.outcome is Outcome.TRANSIENT and dated.reason == "http_429"


def test_a_refused_answer_keeps_an_excerpt_and_ignores_retry_after() -> None:
    verdict = of_response(Answer(400, {"retry-after": "5"}, "x" * 900), now=T0)
    assert verdict.outcome is Outcome.PERMANENT
    assert verdict.retry_after is None
    assert verdict.excerpt == "x" * 500


def test_an_unreadable_body_gives_an_empty_excerpt() -> None:
    class Streamed:
        status_code = 500
        headers: Mapping[str, str] = {}

        @property
        def text(self) -> str:
            raise httpx.ResponseNotRead()

    assert of_response(Streamed(), now=T0).excerpt == ""


def test_transport_errors_are_transient_and_an_unexpected_error_is_the_callers_choice() -> None:
    timeout = of_error(httpx.ReadTimeout("slow"), unexpected=Outcome.PERMANENT)
    assert (timeout.outcome, timeout.reason) == (Outcome.TRANSIENT, "timeout")
    network = of_error(httpx.ConnectError("refused"), unexpected=Outcome.PERMANENT)
    assert (network.outcome, network.reason) == (Outcome.TRANSIENT, "network")
    for choice in (Outcome.TRANSIENT, Outcome.PERMANENT):
        verdict = of_error(RuntimeError("broken transport"), unexpected=choice)
        assert (verdict.outcome, verdict.reason) == (choice, "error")
        assert "broken transport" in verdict.detail


# -- planning ----------------------------------------------------------------------------


def planner(queue: MemorySpool, **options: Any) -> Planner:
    settings: dict[str, Any] = {
        "batch_size": 10,
        "flush_interval": 1.0,
        "max_batch_bytes": 1_048_576,
        "max_records": 1000,
        "lease": 30.0,
        "gzip": False,
    }
    settings.update(options)
    circuits = settings.pop("circuits", Circuits(3, RETRY, rng=random.Random(1)))
    store = settings.pop("store", queue)
    return Planner(queue, store, EndpointRouter(None), circuits, **settings)


def test_poll_waits_idle_when_empty_and_until_the_next_retry() -> None:
    queue = MemorySpool(100)
    plan = planner(queue)
    assert plan.poll(T0, flushing=False, stopping=False) == IDLE_POLL
    queue.offer(ENVELOPE, [visitor(1)], T0)
    got = plan.poll(T0 + 2, flushing=False, stopping=False)
    assert isinstance(got, Claim)
    queue.retry(got.ids, attempts=1, first_attempt_at=T0, next_attempt_at=T0 + 2.25)
    assert plan.poll(T0 + 2, flushing=False, stopping=False) == pytest.approx(0.25)


def test_a_partial_batch_waits_for_flush_interval_unless_flushing_or_stopping() -> None:
    queue = MemorySpool(100)
    plan = planner(queue, batch_size=10, flush_interval=1.0)
    for i in range(4):
        queue.offer(ENVELOPE, [visitor(i)], T0)
    assert plan.poll(T0 + 0.25, flushing=False, stopping=False) == pytest.approx(0.75)
    assert plan.wake_depth == 6  # a producer wakes a sender when the batch is full
    flushed = plan.poll(T0 + 0.25, flushing=True, stopping=False)
    assert isinstance(flushed, Claim) and len(flushed.ids) == 4


def test_a_full_batch_is_due_at_once() -> None:
    queue = MemorySpool(100)
    plan = planner(queue, batch_size=3)
    for i in range(3):
        queue.offer(ENVELOPE, [visitor(i)], T0)
    got = plan.poll(T0, flushing=False, stopping=False)
    assert isinstance(got, Claim) and len(got.ids) == 3


def test_plan_cuts_at_the_byte_cap_and_puts_the_rest_back_due_now() -> None:
    spool = RecordingSpool()
    plan = Planner(
        MemorySpool(10),
        spool,
        EndpointRouter(None),
        Circuits(3, RETRY),
        batch_size=10,
        flush_interval=1.0,
        max_batch_bytes=2048,
        max_records=100,
        lease=30.0,
        gzip=False,
    )
    big = claim(10, size=400)
    requests, refused = plan.plan(big, T0)
    assert not refused
    assert len(requests) == 1
    sent = requests[0]
    assert len(sent.body) <= 2048
    assert spool.retried == [(big.ids[len(sent.ids) :], 0, T0, T0)]
    assert sent.body == parse_envelope(ENVELOPE).body(big.visitors[: len(sent.ids)])


def test_a_failing_target_gets_batch_size_batches_until_it_answers() -> None:
    """A backlog grows a batch to max_batch_bytes; while the target fails, a batch of
    batch_size tries it (a byte-cap batch would only fail bigger; 12 MB more peak RSS
    with 10,000 visitors waiting for a closed port)."""
    spool = RecordingSpool()
    circuits = Circuits(3, RETRY, rng=random.Random(1))
    plan = Planner(
        MemorySpool(10),
        spool,
        EndpointRouter(None),
        circuits,
        batch_size=10,
        flush_interval=1.0,
        max_batch_bytes=1_048_576,
        max_records=1000,
        lease=30.0,
        gzip=False,
    )
    url = parse_envelope(ENVELOPE).url
    (healthy,), _ = plan.plan(claim(50), T0)
    assert len(healthy.ids) == 50 and spool.retried == []
    circuits.failed(url, T0, detail="HTTP 503")
    (trying,), _ = plan.plan(claim(50), T0)
    assert trying.ids == list(range(1, 11))
    assert spool.retried == [(list(range(11, 51)), 0, T0, T0)]  # the rest: due now
    circuits.succeeded(url, T0)
    (again,), _ = plan.plan(claim(50), T0)
    assert len(again.ids) == 50


def test_a_visitor_over_the_api_limit_is_put_back_then_refused_alone() -> None:
    spool = RecordingSpool()
    plan = Planner(
        MemorySpool(10),
        spool,
        EndpointRouter(None),
        Circuits(3, RETRY),
        batch_size=10,
        flush_interval=1.0,
        max_batch_bytes=API_MAX_BYTES,
        max_records=100,
        lease=30.0,
        gzip=False,
    )
    visitors = [visitor(1, 1_400_000), visitor(2, 1_400_000), visitor(3, API_MAX_BYTES)]
    mixed = Claim(ENVELOPE, [1, 2, 3], visitors, 0, None, [T0] * 3)
    requests, refused = plan.plan(mixed, T0)
    assert [r.ids for r in requests] == [[1, 2]] and not refused
    assert spool.retried == [([3], 0, T0, T0)]
    giant = Claim(ENVELOPE, [3], visitors[2:], 0, None, [T0])
    requests, refused = plan.plan(giant, T0)
    assert requests == []
    assert [(r.ids, r.error.reason) for r in refused] == [([3], "too_large")]


def test_an_unreadable_envelope_is_refused() -> None:
    plan = planner(MemorySpool(10))
    broken = Claim(b"not an envelope", [1], [visitor(1)], 0, None, [T0])
    requests, refused = plan.plan(broken, T0)
    assert requests == []
    assert refused[0].error.reason == "invalid_envelope"


def test_an_open_circuit_puts_the_claim_back_untouched() -> None:
    spool = RecordingSpool()
    circuits = Circuits(1, RETRY, rng=random.Random(3))
    circuits.failed(URL, T0, retry_after=30.0)
    plan = Planner(
        MemorySpool(10),
        spool,
        EndpointRouter(None),
        circuits,
        batch_size=10,
        flush_interval=1.0,
        max_batch_bytes=1 << 20,
        max_records=100,
        lease=30.0,
        gzip=False,
    )
    held = claim(2, attempts=2, first=T0 - 5)
    assert plan.plan(held, T0 + 1) == ([], [])
    assert spool.retried == [(held.ids, 2, T0 - 5, T0 + 30.0)]


def test_endpoint_routing_and_gzip_apply_when_planning() -> None:
    queue = MemorySpool(10)
    plan = Planner(
        queue,
        queue,
        EndpointRouter("http://127.0.0.1:8787"),
        Circuits(3, RETRY),
        batch_size=1,
        flush_interval=1.0,
        max_batch_bytes=1 << 20,
        max_records=10,
        lease=30.0,
        gzip=True,
    )
    (req,), _ = plan.plan(claim(1), T0)
    assert req.url == "http://127.0.0.1:8787/v1/events"
    plan.compress(req)
    assert req.headers["Content-Encoding"] == "gzip"
    assert req.content is not None and req.content[:2] == b"\x1f\x8b"


# -- settling ----------------------------------------------------------------------------


def test_delivered_acks_counts_and_reports() -> None:
    m = Machine()
    req = request(3)
    assert m.answer(req, 204, T0) == []
    assert m.spool.acked == [[1, 2, 3]]
    snap = m.recorder.snapshot()
    assert (snap.delivered, snap.batches_sent, snap.attempts, snap.in_flight) == (3, 1, 1, 0)
    assert snap.last_success_at == T0
    assert m.delivered == [req.visitors]
    assert m.settled == 1


def test_413_halves_the_batch_and_dead_letters_a_lone_visitor() -> None:
    m = Machine()
    follow = m.answer(request(5), 413, T0)
    assert [r.ids for r in follow] == [[1, 2], [3, 4, 5]]
    halves_of_two = m.answer(follow[0], 413, T0 + 1)
    assert [r.ids for r in halves_of_two] == [[1], [2]]
    assert m.answer(halves_of_two[0], 413, T0 + 2) == []
    assert m.spool.dead == [([1], "http_413", T0 + 2)]
    assert m.circuits.open_count(T0 + 2) == 0  # a big batch says nothing about the endpoint


def test_halves_of_a_request_carry_the_same_claim() -> None:
    req = request(4, attempts=2, first=T0 - 9)
    (left, right), refused = halves(req)
    assert not refused
    assert left.claim is right.claim is req.claim
    assert left.body == req.envelope.body(req.visitors[:2])


def test_a_permanent_answer_is_dead_lettered_with_its_excerpt() -> None:
    m = Machine()
    m.answer(request(2), 401, T0)
    assert m.spool.dead == [([1, 2], "http_401", T0)]
    (error,) = m.failures
    assert (error.status, error.attempts, error.response_excerpt) == (401, 1, "body of 401")
    assert m.recorder.snapshot().failed == {"http_401": 2}
    assert m.recorder.snapshot().splits == 0


def _bisect(m: Machine, n: int, bad: set[int], status: int = 400) -> int:
    """Answer ``status`` to any request carrying a bad id, 204 otherwise; count requests."""
    pending = [request(n)]
    sent = 0
    while pending:
        req = pending.pop()
        sent += 1
        refused = any(i in bad for i in req.ids)
        pending.extend(m.answer(req, status if refused else 204, T0 + sent))
    return sent


@pytest.mark.parametrize("status", [400, 422])
def test_a_refused_batch_is_bisected_so_only_the_bad_visitor_is_dead_lettered(
    status: int,
) -> None:
    m = Machine()
    sent = _bisect(m, 10, {7}, status)
    assert [ids for ids, _, _ in m.spool.dead] == [[7]]
    snap = m.recorder.snapshot()
    assert snap.delivered == 9 and snap.failed == {f"http_{status}": 1}
    assert sent <= 2 * 10 - 1 and snap.splits == sent // 2
    (error,) = m.failures
    assert "isolated by splitting" in str(error)
    assert m.circuits.open_count(T0 + sent) == 0


@pytest.mark.parametrize(
    ("n", "bad"), [(1, {1}), (2, {1, 2}), (16, set(range(1, 17))), (9, {2, 9})]
)
def test_bisection_never_takes_more_than_2n_minus_1_requests(n: int, bad: set[int]) -> None:
    m = Machine()
    sent = _bisect(m, n, bad)
    assert sent <= 2 * n - 1
    assert sorted(i for ids, _, _ in m.spool.dead for i in ids) == sorted(bad)
    assert m.recorder.snapshot().delivered == n - len(bad)


def test_a_transient_answer_schedules_a_retry_with_backoff_and_retry_after() -> None:
    m = Machine()
    m.answer(request(2), 503, T0, **{"retry-after": "12"})
    ((ids, attempts, first, due),) = m.spool.retried
    assert (ids, attempts, first) == ([1, 2], 1, T0)
    assert due == pytest.approx(T0 + 12.0)  # never earlier than the server asked
    assert m.spool.dead == [] and m.recorder.snapshot().failed == {}
    assert "HTTP 503" in (m.recorder.snapshot().last_error or "")


def test_backoff_grows_and_keeps_the_first_attempt_time() -> None:
    m = Machine()
    m.answer(request(1, attempts=3, first=T0 - 20), 500, T0)
    ((_, attempts, first, due),) = m.spool.retried
    assert (attempts, first) == (4, T0 - 20)
    assert T0 <= due <= T0 + 8.0  # full jitter below min(backoff_max, base * 2 ** 3)


@pytest.mark.parametrize(
    ("policy", "claim_attempts", "first", "headers", "reason"),
    [
        (RetryPolicy(max_attempts=2), 1, T0 - 1, {}, GiveUp.ATTEMPTS_EXHAUSTED),
        (
            RetryPolicy(max_attempts=None, max_retry_age=10.0),
            5,
            T0 - 10,
            {},
            GiveUp.RETRY_AGE_EXCEEDED,
        ),
        (RETRY, 0, None, {"retry-after": "3600"}, GiveUp.RETRY_AFTER_TOO_LONG),
    ],
)
def test_the_retry_policy_giving_up_dead_letters_with_its_reason(
    policy: RetryPolicy,
    claim_attempts: int,
    first: float | None,
    headers: dict[str, str],
    reason: GiveUp,
) -> None:
    m = Machine(retry=policy)
    m.answer(request(2, attempts=claim_attempts, first=first), 503, T0, **headers)
    assert m.spool.retried == []
    assert m.spool.dead == [([1, 2], reason.value, T0)]
    assert m.failures[0].reason == reason == reason.value


def test_an_abandoned_request_is_no_longer_in_flight() -> None:
    m = Machine()
    req = request(1)
    m.settler.begin(req, T0)
    assert m.recorder.snapshot().in_flight == 1
    m.settler.abandon(req)
    assert m.recorder.snapshot().in_flight == 0
    assert m.spool.acked == m.spool.retried == m.spool.dead == []


def test_a_raising_user_callback_is_counted_and_delivery_goes_on() -> None:
    spool = RecordingSpool()
    recorder = StatsRecorder()

    def boom(visitors: list[bytes]) -> None:
        raise RuntimeError("callback bug")

    settler = Settler(spool, recorder, RETRY, Circuits(3, RETRY), on_success=boom)
    req = request(1)
    settler.begin(req, T0)
    settler.settle(req, Verdict(Outcome.DELIVERED, "http_204", "HTTP 204", 204), T0)
    assert spool.acked == [[1]]
    assert recorder.snapshot().callback_errors == 1


# -- the circuit breaker -----------------------------------------------------------------


def test_a_circuit_opens_after_the_threshold_half_opens_and_closes_on_success() -> None:
    m = Machine(threshold=3)
    gate = m.circuits.gate
    for i in range(2):
        m.answer(request(1), 503, T0 + i)
        assert gate(URL, T0 + i) is None  # below the threshold requests still go
    m.answer(request(1), 503, T0 + 2)
    opened_until = gate(URL, T0 + 2)
    assert opened_until is not None
    assert T0 + 2 + 0.5 <= opened_until <= T0 + 2 + 1.0  # backoff_base / 2 .. backoff_base
    assert m.circuits.open_count(T0 + 2) == 1
    later = opened_until + 0.01
    assert gate(URL, later) is None  # half-open: this one is the probe
    assert gate(URL, later) == pytest.approx(later + PROBE_WAIT)  # the others wait
    m.answer(request(1), 204, later)
    assert gate(URL, later) is None
    assert m.circuits.open_count(later) == 0


def test_a_failed_probe_opens_the_circuit_for_longer() -> None:
    circuits = Circuits(1, RETRY, rng=random.Random(5))
    circuits.failed(URL, T0)
    first = circuits.gate(URL, T0)
    assert first is not None
    assert circuits.gate(URL, first) is None  # the probe
    circuits.failed(URL, first)
    second = circuits.gate(URL, first)
    assert second is not None
    assert second - first >= 1.0  # the second opening: base * 2 / 2 at least


def test_retry_after_holds_a_circuit_open_even_below_the_threshold() -> None:
    circuits = Circuits(5, RETRY)
    circuits.failed(URL, T0, retry_after=20.0)
    assert circuits.gate(URL, T0 + 10) == T0 + 20.0
    assert circuits.gate(URL, T0 + 21) is None
    circuits.failed(URL, T0, retry_after=3600.0)
    assert circuits.gate(URL, T0 + 1) == T0 + RETRY.max_retry_after  # capped


def test_circuits_are_per_url() -> None:
    circuits = Circuits(1, RETRY)
    circuits.failed(URL, T0)
    assert circuits.gate(URL, T0) is not None
    assert circuits.gate("https://eu.logx.optimizely.com/v1/events", T0) is None


def test_a_backlog_claim_asks_only_for_what_fits_one_body() -> None:
    """Under a backlog a claim asks for max_batch_bytes of visitors less what the
    envelope and the commas add, once the envelope is known: it once asked for the
    whole cap of visitor bytes, so every byte-cap batch put its last visitors back (one
    more spool write per batch, 3% of a forwarder's CPU draining a SQLite backlog)."""
    queue = MemorySpool(10_000)
    queue.append([(ENVELOPE, visitor(i, 200)) for i in range(3_000)], now=T0)
    store = RecordingSpool()
    plan = planner(queue, store=store, max_batch_bytes=65_536, max_records=10_000)
    sizes = []
    for _ in range(4):
        claimed = plan.poll(T0 + 5, flushing=False, stopping=False)
        assert isinstance(claimed, Claim)
        (request,), refused = plan.plan(claimed, T0 + 5)
        assert not refused and len(request.body) <= 65_536
        sizes.append(len(request.body))
        queue.ack(request.ids)
    assert len(store.retried) <= 1  # the first claim, before the envelope was seen
    assert min(sizes) > 0.95 * 65_536, sizes
