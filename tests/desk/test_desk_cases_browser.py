"""A case on the desk in a real headless Chromium, on a real `veille intake serve`, router and
broker: the dispatch topic carries a case (Dispatch v2, published here as the grouping worker
will); keyboard only, the inbox shows one row "4 signalements liés", the case's page lists its
reports, one is split out, then acknowledged on its own. axe-core finds nothing."""

from __future__ import annotations

import pytest
from browser_helpers import ConsoleErrors, launch_browser, screenshot
from confluent_kafka import Producer
from desk_cases import case_of
from hub_helpers import HubProcess, read_topics
from test_desk_browser import Hub, axe_violations, hub, log_in, shows, tab_to

from veille.topics import Topics

pytestmark = pytest.mark.kafka
__all__ = ["hub"]  # the module's fixture: a `veille intake serve` with two bodies' accounts


def test_a_case_is_one_row_and_a_report_is_split_out_with_the_keyboard(hub: Hub) -> None:
    settings, intake, logins = hub
    topics = Topics(settings.topic_prefix)
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    case = case_of(settings, 4)
    producer = Producer(settings.kafka_client_config())
    for d in case:
        producer.produce(topics.dispatch(d.agency_id), d.encode(), key=d.event_id.encode())
    assert producer.flush(15) == 0
    opened, split = str(case[0].id), str(case[2].id)
    try:
        with launch_browser() as browser:
            page = browser.new_page(viewport={"width": 1024, "height": 1366}, locale="fr-FR",
                                    timezone_id="Europe/Paris")
            errors = ConsoleErrors(page)
            log_in(page, intake.url, "voirie-montveille", logins["voirie-montveille"])
            shows(page, f"#ref-{opened}")
            assert page.query_selector(f"#ref-{split}") is None  # an update is not a row
            row = page.inner_text(f"tr[data-id='{opened}']")
            assert "4 signalements liés" in row
            assert axe_violations(page) == []
            screenshot(page, "desk-case-inbox")
            tab_to(page, f"ref-{opened}")
            page.keyboard.press("Enter")
            page.wait_for_url(f"**/agence/dispatches/{opened}")
            text = page.inner_text("main")
            assert "Signalements du dossier (4)" in text and "Accueil de mairie" in text
            assert axe_violations(page) == []
            screenshot(page, "desk-case")
            # Split the third report with the keyboard: Tab to its button, Enter.
            button = page.query_selector_all("form[action='/agence/dossiers/scinder'] button")[1]
            button.evaluate("b => b.id = 'split-target'")
            tab_to(page, "split-target", limit=120)
            page.keyboard.press("Enter")
            page.wait_for_url(f"**/agence/dispatches/{split}?fait=scinde")
            assert "scindé du dossier" in page.inner_text("main")
            assert axe_violations(page) == []
            screenshot(page, "desk-case-split")
            # Now a dispatch of its own: answered "pris en compte" on its own id.
            tab_to(page, "one-submit")
            page.keyboard.press("Enter")
            page.wait_for_url("**?fait=acknowledged")
            assert "Pris en compte" in page.inner_text("#status-now")
            assert errors.messages == []
        records = read_topics(settings, [topics.routed], timeout=60, until=lambda rs: len(
            [r for _, r in rs if r.record_type in ("CaseSplit", "StatusUpdate")]) >= 2)
        forwarded = {(r.record_type, str(r.value["dispatch_id"])) for _, r in records
                     if r.record_type in ("CaseSplit", "StatusUpdate")}
        assert forwarded == {("CaseSplit", split), ("StatusUpdate", split)}, router.log()
    finally:
        router.stop()
