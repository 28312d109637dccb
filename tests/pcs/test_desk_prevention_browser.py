"""The prevention form in a real headless Chromium, on a real `veille intake serve` and broker:
a chef of Montveille's safeguard cell records a walk and one report with the keyboard (the
date filled by value: its segments' order follows the browser's language); axe-core
finds nothing; the report is an Incident on Montveille's intake topic (channel
neighbourhood_representative) and the ``prevention`` event on the cascade topic names it."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "desk"))
from browser_helpers import ConsoleErrors, launch_browser, screenshot
from confluent_kafka import Consumer
from hub_helpers import hub_settings, read_topics, wait_for
from test_desk_browser import TABLET, Intake, axe_violations, log_in, tab_to

from veille.config import Settings
from veille.producers.desk.accounts import ACCOUNTS_FILE, AccountStore
from veille.schemas.enums import IncidentCategory
from veille.topics import Topics

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def hub(kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Intake, str]]:
    settings = hub_settings(kafka.settings, tmp_path_factory.mktemp("desk-prevention"))
    _, password = AccountStore(settings.state_dir / ACCOUNTS_FILE).issue(
        "Chef des services", agency_id="mairie-35401", role="chef", login="chef-montveille")
    intake = Intake(settings)
    intake.start()
    try:
        yield settings, intake, password
    finally:
        intake.stop()


def cascade_events(settings: Settings, wanted: int, timeout: float = 30) -> list[dict[str, Any]]:
    """The cascade topic is JSON (veille/pcs/events.py), not the Avro of read_topics."""
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"reader-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([Topics(settings.topic_prefix).pcs_cascade])
    out: list[dict[str, Any]] = []
    try:
        def enough() -> bool:
            out.extend(json.loads(m.value()) for m in consumer.consume(100, timeout=0.5) if m.error() is None)
            return len(out) >= wanted
        wait_for(enough, timeout, "the prevention event")
    finally:
        consumer.close()
    return out


def test_keyboard_only_walk_with_a_report(hub: tuple[Settings, Intake, str]) -> None:
    settings, intake, password = hub
    with launch_browser() as browser:
        page = browser.new_page(**TABLET)
        errors = ConsoleErrors(page)
        log_in(page, intake.url, "chef-montveille", password)
        page.goto(intake.url + "/agence/prevention")
        assert axe_violations(page) == []
        # The date's segments follow the browser's language, not the page's: the one field
        # filled by value (ISO), the rest with the keyboard.
        page.fill("#day", "2026-09-15")
        tab_to(page, "area")  # past the date's segments and its calendar button
        page.keyboard.type("quartier de la Gare")
        tab_to(page, "residents")
        page.keyboard.press("Control+a")
        page.keyboard.type("12")
        tab_to(page, "police")
        page.keyboard.press("Control+a")
        page.keyboard.type("2")
        tab_to(page, "r1-category")
        page.keyboard.press("ArrowDown")  # the first category after "(aucun)"
        page.keyboard.press("Tab")
        page.keyboard.type("rue de la Gare")
        page.keyboard.press("Tab")
        page.keyboard.type("trois lampadaires éteints")
        screenshot(page, "desk-prevention")
        page.keyboard.press("Enter")
        page.wait_for_selector("[role=status]")
        assert "14 participant(s), 1 signalement(s)" in page.inner_text("[role=status]")
        assert axe_violations(page) == []
        screenshot(page, "desk-prevention-done")
        assert errors.messages == []
    [event] = cascade_events(settings, 1)
    assert event["type"] == "prevention" and event["action"]["municipality"] == "35401"
    assert event["action"]["date"] == "2026-09-15" and event["action"]["participants"] == {
        "residents": 12, "police": 2}
    [report_id] = event["report_ids"]
    records = read_topics(settings, [Topics(settings.topic_prefix).intake("35401")],
                          until=lambda rs: any(str(r.value.get("id")) == report_id for _, r in rs))
    [incident] = [r.value for _, r in records if str(r.value.get("id")) == report_id]
    assert incident["channel"] == "neighbourhood_representative"
    assert incident["category"] == next(iter(IncidentCategory)).value
    assert incident["address"] == "rue de la Gare" and "trois lampadaires" in incident["description"]
