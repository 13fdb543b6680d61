"""The collector's dashboard in a real browser (Debian's chromium driven by Playwright).

Every test runs a real collector process (``collector_factory``), posts events through a
real :class:`xpevents.Client` and :class:`xpevents.BatchDispatcher`, and looks at the page
as a person would. A screenshot of each test is saved under its ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from xpevents import BatchDispatcher, Client
from xpevents.example import example_datafile
from xpevents.testing import CollectorHandle, run_collector

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]
XSS = "<script>alert(1)</script>"
EXPERIMENT = "checkout_button_color"
TIMEOUT_MS = 8000

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
    reason="needs Debian's chromium (apt-get install chromium); CI installs it",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shared_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorHandle]:
    """One real collector process for the module (started once: the tests stay fast)."""
    path = tmp_path_factory.mktemp("dashboard") / "datafile.json"
    path.write_text(example_datafile())
    with run_collector(datafile=path) as handle:
        yield handle


@pytest.fixture
def dash(shared_collector: CollectorHandle) -> CollectorHandle:
    """The shared collector with no events, zero stats and no faults."""
    shared_collector.reset()
    shared_collector.control(fail_rate=0, rate_429=0, drop_rate=0, latency_ms=0)
    return shared_collector


@pytest.fixture
def page(browser: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs
    yield page
    page.screenshot(path=str(tmp_path / f"{request.node.name}.png"), full_page=True)
    shot = os.environ.get("XPEVENTS_DASHBOARD_SCREENSHOT")
    if shot and request.node.name == "test_live_table_counts_and_experiments":
        shutil.copy(tmp_path / f"{request.node.name}.png", shot)
    context.close()


def send(handle: CollectorHandle, users: int, attributes: dict[str, Any] | None = None) -> int:
    """Activate and track for ``users`` visitors through a real client; return the events."""
    dispatcher = BatchDispatcher(endpoint=handle.base_url, flush_interval=0.05)
    with Client(example_datafile(), event_dispatcher=dispatcher) as client:
        for i in range(users):
            user = f"user-{i}"
            attrs = {"country": "US", **(attributes or {})}
            assert client.activate(EXPERIMENT, user, attrs) is not None
            client.track("purchase", user, attrs, event_tags={"revenue": 100 + i})
    dispatcher.close(timeout=10)
    return 2 * users


def test_live_table_counts_and_experiments(dash: CollectorHandle, page: Any) -> None:
    page.goto(dash.base_url + "/")
    expect(page.locator("#live")).to_have_text("(live)", timeout=TIMEOUT_MS)
    events = send(dash, 16)
    dash.wait_for(unique_events=events)
    rows = page.locator("#rows tr.event")
    expect(rows).to_have_count(events, timeout=TIMEOUT_MS)
    expect(page.locator('[data-stat="unique_events"]')).to_have_text(str(events))
    # newest first: the last visitor's conversion is the top row
    first = rows.first
    expect(first.locator("td.type")).to_have_text("conversion")
    expect(first.locator("td.visitor")).to_have_text("user-15")
    expect(first.locator("td.amount")).to_have_text("revenue 115")
    impression = page.locator("#rows tr.event", has=page.locator("td.type", has_text="impression"))
    expect(impression.first.locator("td.experiment")).to_have_text(EXPERIMENT)
    assert impression.first.locator("td.variation").inner_text() in {
        "control",
        "variant_a",
        "variant_b",
    }
    expect(impression.first.locator("td.client")).to_contain_text("xpevents")
    expect(impression.first.locator("td.status")).to_have_text("accepted")
    impression.first.locator("summary").click()
    expect(impression.first.locator("pre")).to_contain_text('"visitor_id": "user-15"')
    panel = page.locator(f'#experiments .exp[data-experiment="{EXPERIMENT}"]')
    expect(panel).to_contain_text("16 impressions", timeout=TIMEOUT_MS)
    expect(panel.locator("p")).to_contain_text("SRM ok")
    expect(panel).to_contain_text("33.3%")  # expected share of each of the 3 variations
    # every impression's visitor converted once: conversions per variation add up to 16
    conversions = [int(c) for c in panel.locator("tbody tr td:nth-child(5)").all_inner_texts()]
    assert sum(conversions) == 16
    assert page.locator("#chart-svg polyline.accepted").get_attribute("points")


def test_filters(dash: CollectorHandle, page: Any) -> None:
    send(dash, 6)
    page.goto(dash.base_url + "/?visitor=user-3")
    expect(page.locator("#rows tr")).to_have_count(2, timeout=TIMEOUT_MS)
    expect(page.locator("#rows td.visitor")).to_have_text(["user-3", "user-3"])
    page.goto(dash.base_url + "/")
    page.select_option("select[name=type]", "impression")
    page.fill("input[name=experiment]", EXPERIMENT)
    page.click("#filters button[type=submit]")
    expect(page.locator("#rows tr")).to_have_count(6, timeout=TIMEOUT_MS)
    expect(page.locator("#rows td.type")).to_have_text(["impression"] * 6)
    page.goto(dash.base_url + "/?key=purchase&status=accepted")
    expect(page.locator("#rows tr")).to_have_count(6, timeout=TIMEOUT_MS)


def test_fault_form_changes_behaviour(dash: CollectorHandle, page: Any) -> None:
    page.goto(dash.base_url + "/")
    page.fill("#fault-form input[name=fail_rate]", "1")
    page.click("#fault-form button[type=submit]")
    page.wait_for_url(dash.base_url + "/")
    assert dash.control()["fail_rate"] == 1.0
    expect(page.locator("#fault-form input[name=fail_rate]")).to_have_value("1.0")
    body = json.dumps({"account_id": "1", "visitors": []})
    response = httpx.post(
        dash.events_url, content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code in (500, 503)
    fault_row = page.locator("#rows tr.request.fault")
    expect(fault_row).to_have_count(1, timeout=TIMEOUT_MS)
    expect(fault_row.locator("td.status")).to_contain_text(str(response.status_code))
    expect(page.locator('[data-stat="faults_total"]')).to_have_text("1")
    page.fill("#fault-form input[name=fail_rate]", "0")
    page.click("#fault-form button[type=submit]")
    page.wait_for_url(dash.base_url + "/")
    assert dash.control()["fail_rate"] == 0.0
    expect(page.locator("#rows tr.request.fault")).to_have_count(1, timeout=TIMEOUT_MS)
    dash.reset()  # event ids start over: the open page follows
    expect(page.locator("#rows tr")).to_have_count(0, timeout=TIMEOUT_MS)
    send(dash, 1)
    expect(page.locator("#rows tr.event")).to_have_count(2, timeout=TIMEOUT_MS)


def test_payload_values_render_as_text(dash: CollectorHandle, page: Any) -> None:
    page.goto(dash.base_url + "/")
    send(dash, 1, {"nickname": XSS})
    hostile = {
        "account_id": "1",
        "client_name": XSS,
        "visitors": [
            {
                "visitor_id": f'"><img src=x onerror=alert(2)>{XSS}',
                "attributes": [{"entity_id": "1", "key": XSS, "type": "custom", "value": XSS}],
                "snapshots": [
                    {
                        "decisions": [
                            {
                                "campaign_id": "1",
                                "experiment_id": "2",
                                "variation_id": "3",
                                "metadata": {
                                    "flag_key": "",
                                    "rule_key": XSS,
                                    "rule_type": "experiment",
                                    "variation_key": "<b onmouseover=alert(3)>v</b>",
                                    "enabled": True,
                                },
                            }
                        ],
                        "events": [
                            {
                                "entity_id": "2",
                                "uuid": "u-1",
                                "key": "campaign_activated",
                                "timestamp": 1_700_000_000_000,
                            }
                        ],
                    }
                ],
            }
        ],
    }
    assert httpx.post(dash.events_url, json=hostile).status_code == 204
    rows = page.locator("#rows tr.event")
    expect(rows).to_have_count(3, timeout=TIMEOUT_MS)
    top = rows.first
    expect(top.locator("td.experiment")).to_have_text(XSS)
    expect(top.locator("td.variation")).to_have_text("<b onmouseover=alert(3)>v</b>")
    expect(top.locator("td.client")).to_have_text(XSS)
    top.locator("summary").click()
    expect(top.locator("pre")).to_contain_text(XSS)
    expect(page.locator(f'#experiments .exp[data-experiment="{XSS}"]')).to_have_count(1)
    page.reload()  # the server-rendered page too
    expect(page.locator("#rows tr.event").first.locator("td.experiment")).to_have_text(XSS)
    assert page.locator("#rows script, #rows img, #rows b, #experiments script").count() == 0
    page.wait_for_timeout(300)
    assert page.dialogs == []
    headers = httpx.get(dash.base_url + "/").headers
    assert "script-src 'self'" in headers["content-security-policy"]


def test_static_parts_work_without_javascript(
    dash: CollectorHandle, browser: Any, tmp_path: Path
) -> None:
    send(dash, 4)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(dash.base_url + "/")
        expect(page.locator("#live")).to_have_text("(static: reload to refresh)")
        expect(page.locator("#rows tr.event")).to_have_count(8)
        expect(page.locator('[data-stat="unique_events"]')).to_have_text("8")
        expect(page.locator("#experiments")).to_contain_text("4 impressions")
        expect(page.locator("#chart-svg polyline")).to_have_count(4)
        page.fill("input[name=visitor]", "user-2")
        page.click("#filters button[type=submit]")
        expect(page.locator("#rows tr")).to_have_count(2)
        page.fill("#fault-form input[name=rate_429]", "0.25")
        page.click("#fault-form button[type=submit]")
        assert dash.control()["rate_429"] == 0.25
        expect(page.locator("#fault-form input[name=rate_429]")).to_have_value("0.25")
    finally:
        page.screenshot(path=str(tmp_path / "no-javascript.png"), full_page=True)
        context.close()


def test_strict_mode_warnings_are_highlighted(browser: Any, tmp_path: Path) -> None:
    visitor = {
        "visitor_id": XSS,
        "attributes": [],
        "snapshots": [
            {
                "decisions": [],
                "events": [
                    # entity_id null: what PHP SDK 4.x sends; the schema wants a string
                    {"entity_id": None, "key": "purchase", "timestamp": 1, "uuid": "u-1"}
                ],
            }
        ],
    }
    payload = {"account_id": "1", "visitors": [visitor], "client_name": XSS}
    with run_collector(strict="warn") as handle:
        answer = httpx.post(handle.events_url, json=payload, trust_env=False)
        assert answer.status_code == 204  # warn: accepted, and reported
        context = browser.new_context()
        page = context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(handle.base_url + "/")
        warnings = page.locator("#warnings")
        expect(warnings.locator(".warning-note")).to_contain_text("strict mode warn")
        expect(warnings).to_contain_text("entity_id")
        expect(warnings.locator("tr.warning").first).to_be_visible()
        page.screenshot(path=str(tmp_path / "strict.png"), full_page=True)
        assert not dialogs
        context.close()
    with run_collector() as lenient:
        context = browser.new_context()
        page = context.new_page()
        page.goto(lenient.base_url + "/")
        expect(page.locator("#warnings")).to_contain_text("strict mode off")
        context.close()
