"""xpevents.testing: run_collector, the handle, and the pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable

import httpx
import pytest

from xpevents.testing import CollectorHandle, run_collector

pytest_plugins = ["pytester"]


def _payload(*uuids: str) -> dict[str, object]:
    return {
        "account_id": "1",
        "visitors": [
            {
                "visitor_id": f"v-{u}",
                "snapshots": [
                    {"events": [{"entity_id": "e", "uuid": u, "key": "purchase", "timestamp": 1}]}
                ],
            }
            for u in uuids
        ],
    }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_collector_fixture(collector: CollectorHandle) -> None:
    assert collector.base_url.startswith("http://127.0.0.1:")
    assert collector.events_url == collector.base_url + "/v1/events"
    assert collector.eu_events_url == collector.base_url + "/eu/v1/events"
    assert _alive(collector.pid)
    with httpx.Client(trust_env=False) as http:
        assert http.post(collector.events_url, json=_payload("a", "b")).status_code == 204
        assert http.post(collector.eu_events_url, json=_payload("c")).status_code == 204
    stats = collector.wait_for(unique_events=3, timeout=5)
    assert stats["conversions"] == {"purchase": 3}
    assert [e["uuid"] for e in collector.events(limit=2)] == ["a", "b"]
    assert collector.control()["fail_rate"] == 0.0
    collector.reset()
    assert collector.stats()["unique_events"] == 0


def test_collector_factory(collector_factory: Callable[..., CollectorHandle]) -> None:
    flaky = collector_factory(fail_rate=1.0, seed=1)
    healthy = collector_factory()
    assert flaky.pid != healthy.pid
    with httpx.Client(trust_env=False) as http:
        assert http.post(flaky.events_url, json=_payload("x")).status_code in (500, 503)
        assert http.post(healthy.events_url, json=_payload("x")).status_code == 204
    assert flaky.control(fail_rate=0.0)["fail_rate"] == 0.0
    with pytest.raises(ValueError, match="fail_rate"):
        flaky.control(fail_rate=3)


def test_wait_for_times_out_with_the_last_stats(collector: CollectorHandle) -> None:
    with pytest.raises(TimeoutError, match=r"stored 0 unique events, not 1.*last stats"):
        collector.wait_for(unique_events=1, timeout=0.2)


def test_run_collector_stops_the_process() -> None:
    with run_collector(latency_ms=1) as handle:
        pid = handle.pid
        assert handle.control()["latency_ms"] == 1.0
    assert not _alive(pid)


def test_run_collector_reports_a_failed_start_with_stderr() -> None:
    with (
        pytest.raises(RuntimeError, match=r"(?s)did not start.*--fail-rate"),
        run_collector(fail_rate=7),
    ):
        pass  # pragma: no cover


def test_fixtures_reach_other_projects_through_the_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import httpx

        def test_uses_the_fixture(collector):
            with httpx.Client(trust_env=False) as http:
                body = {"account_id": "1", "visitors": []}
                assert http.post(collector.events_url, json=body).status_code == 204
            assert collector.stats()["payloads"] == 1

        def test_uses_the_factory(collector_factory):
            c = collector_factory(rate_429=1.0, retry_after=4)
            with httpx.Client(trust_env=False) as http:
                r = http.post(c.events_url, json={"account_id": "1", "visitors": []})
            assert (r.status_code, r.headers["retry-after"]) == (429, "4")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_prefixed_fixture_names_and_a_users_own_collector_fixture_wins(
    pytester: pytest.Pytester,
) -> None:
    """Newcomer review F5: the short names are generic. The prefixed ones always reach
    the plugin; a project's own ``collector`` fixture takes precedence over the short one."""
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def collector():
            return "the project's own"
        """
    )
    pytester.makepyfile(
        """
        def test_own(collector):
            assert collector == "the project's own"

        def test_prefixed(xpevents_collector, xpevents_collector_factory):
            assert xpevents_collector.events_url.startswith("http://127.0.0.1:")
            other = xpevents_collector_factory(latency_ms=1)
            assert other.control()["latency_ms"] == 1.0
            assert other.pid != xpevents_collector.pid
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
