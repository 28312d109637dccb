"""Cases in the console in a real headless Chromium, on a running sink (real broker, real chDB)
that stored the known cases of tests/case_helpers.py from <prefix>.routed (RoutedIncident v2,
status updates, a CaseSplit): the map shows cases instead of reports with show=cases in the URL,
a marker per case and a table linking each; a case's page lists its reports and its bodies'
statuses; axe-core finds no violation; the browser logs no error. Screenshots: test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
from browser_helpers import ConsoleErrors, axe_violations, launch_browser, screenshot
from case_helpers import Cases
from confluent_kafka import Producer
from hub_helpers import HubProcess, hub_settings, wait_for
from sink_helpers import now_ms

from veille.schemas.models import CaseSplit, StatusUpdate
from veille.topics import Topics

if TYPE_CHECKING:
    from conftest import KafkaFixture

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def hub(kafka: KafkaFixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Cases]]:
    settings = hub_settings(kafka.settings, tmp_path_factory.mktemp("cases"), sink_batch_seconds=0.2)
    cases = Cases(now_ms() - timedelta(hours=3))
    sink = HubProcess(settings, "sink", "run", "--port", "0").start()
    try:
        url = sink.info("sink.json")["url"]
        producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True, "acks": "all"})
        for rec in cases.records():
            key = rec.incident_id if isinstance(rec, StatusUpdate | CaseSplit) \
                else rec.id  # type: ignore[attr-defined]
            producer.produce(Topics(settings.topic_prefix).routed, key=key.bytes, value=rec.encode())
        assert producer.flush(30) == 0

        def stored() -> bool:
            s = httpx.get(f"{url}/stats", timeout=30).json()
            split = httpx.get(f"{url}/console/case", params={"id": str(cases.a4)}, timeout=30)
            return (s["incidents"], s["status_events"]) == (9, 4) and split.status_code == 200

        wait_for(stored, 90, "the sink to store the known cases")
        yield url, cases
    finally:
        assert sink.stop() == 0, sink.log()


@pytest.fixture(scope="module")
def browser(hub: tuple[str, Cases]) -> Iterator[Any]:
    with launch_browser() as b:
        yield b


def console_url(url: str, **params: str) -> str:
    today = datetime.now(UTC).date()
    query = {"from": (today - timedelta(days=2)).isoformat(), "to": (today + timedelta(days=2)).isoformat(),
             **params}
    return f"{url}/console/?{urlencode(query)}"


def test_map_shows_cases_and_a_case_page(hub: tuple[str, Cases], browser: Any) -> None:
    url, cases = hub
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="fr-FR",
                            timezone_id="Europe/Paris")
    errors = ConsoleErrors(page)
    failed: list[str] = []
    page.on("requestfailed", lambda req: failed.append(req.url))
    try:
        page.goto(console_url(url, show="cases"))
        page.wait_for_function("document.body.dataset.ready")
        assert page.input_value("#f-show") == "cases"
        # Cases A (3 reports), B (2), C (1) and a4 (split out: its own): four markers, no grid cell.
        assert page.locator("#map path.case-marker").count() == 4
        assert page.locator("#map path.cell").count() == 0
        assert page.locator("#cases-section").is_visible()
        rows = page.eval_on_selector_all(
            "#cases-table tbody tr",
            "rows => rows.map(r => [r.dataset.case, r.querySelector('.reports').textContent])")
        # The largest first, then by first report (a4 at +7 min, C at +90 min).
        assert rows == [[str(cases.a1), "3"], [str(cases.b1), "2"], [str(cases.a4), "1"],
                        [str(cases.c1), "1"]]
        screenshot(page, "console-cases")
        assert axe_violations(page) == []

        # The toggle back to reports: the URL loses show=, the grid's cells come back.
        page.select_option("#f-show", "")
        page.wait_for_function(
            "!new URLSearchParams(location.search).has('show') && document.body.dataset.ready")
        assert "show" not in parse_qs(urlparse(page.url).query)
        assert page.locator("#map path.cell").count() > 0
        assert page.locator("#map path.case-marker").count() == 0
        assert not page.locator("#cases-section").is_visible()
        page.go_back()
        page.wait_for_function("new URLSearchParams(location.search).get('show') === 'cases'")
        page.wait_for_function("document.querySelectorAll('#cases-table tbody tr').length === 4")

        # Keyboard to the largest case's page.
        page.focus(f"#cases-table tr[data-case='{cases.a1}'] a")
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/console/case?id={cases.a1}")
        assert page.text_content("#case-state") == "Intervention en cours"
        assert page.text_content("#case-reports") == "3"
        assert page.locator("#case-report-rows tbody tr").count() == 4  # 3 and the one split out
        assert page.locator("#case-bodies tbody tr").count() == 3
        text = page.text_content("main") or ""
        assert "ps-" not in text and "48.1" not in text  # no pseudonym, no position
        screenshot(page, "console-case")
        assert axe_violations(page) == []
        assert errors.messages == [] and failed == []
    finally:
        page.close()
