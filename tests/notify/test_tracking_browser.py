"""The tracking page in a real headless Chromium, on a real `veille intake serve` and broker.

On a phone: type the reference given at reporting, read the incident's state and history, then
stop the messages from the unsubscribe link. axe-core finds nothing on any of these pages; the
intake's access log holds no reference and no unsubscribe token.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_helpers import AXE_JS, AXE_TAGS, ConsoleErrors, launch_browser, screenshot
from confluent_kafka import Producer
from hub_helpers import HubProcess, hub_settings, wait_for
from notify_helpers import free_port, routed, status

from veille.notify.links import UnsubscribeLinks
from veille.topics import Topics

pytestmark = pytest.mark.kafka

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
         "has_touch": True, "locale": "fr-FR", "timezone_id": "Europe/Paris"}
KEYS = {"VEILLE_NOTIFY_REFERENCE_KEY": "browser-reference-key", "VEILLE_NOTIFY_LINK_KEY": "browser-link-key"}


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core was added as an init script: the page's CSP allows no script at all."""
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})",
                           list(AXE_TAGS))
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "targets": [n["target"] for n in v["nodes"]]} for v in result["violations"]]


def test_track_then_unsubscribe_from_a_phone(kafka: Any, tmp_path: Path) -> None:
    settings = hub_settings(kafka.settings, tmp_path / "state")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    intake = HubProcess(settings, "intake", "serve", "--port", str(port), env={
        **KEYS, "VEILLE_NOTIFY_PUBLIC_BASE_URL": base,
        "VEILLE_INTAKE_ANONYMOUS_MUNICIPALITIES": "35401"}).start()
    try:
        with httpx.Client(base_url=base, timeout=20) as client:
            wait_for(lambda: _up(client), 60, "the intake")
            resp = client.post("/v1/incidents", json={
                "municipality": "35401", "category": "neighbour_noise", "severity": "moderate",
                "location": {"lat": 48.1502, "lon": -1.7003}, "address": "5 impasse des Tilleuls",
                "occurred_at": "2026-12-06T08:00:00+00:00",
                "description": "Musique très forte chez M. Durand",
                "notify": {"channel": "email", "address": "claire@example.fr"}})
            assert resp.status_code == 202, resp.text
            answer = resp.json()
            incident_id = uuid.UUID(answer["id"])
            producer = Producer(settings.kafka_client_config())  # as the router writes <prefix>.routed
            for record in (routed(incident_id, "pm-35401", category="neighbour_noise"),
                           status(incident_id, "pm-35401", "acknowledged"),
                           status(incident_id, "pm-35401", "on_site")):
                producer.produce(Topics(settings.topic_prefix).routed, key=incident_id.bytes,
                                 value=record.encode())
            assert producer.flush(10) == 0
            wait_for(lambda: "Intervention en cours" in client.get(answer["tracking_url"]).text, 60,
                     "the tracking page to show the routed history")
        ref = answer["reference"]
        with launch_browser() as browser:
            context = browser.new_context(**PHONE)
            context.add_init_script(path=str(AXE_JS))
            page = context.new_page()
            errors = ConsoleErrors(page)
            page.goto(f"{base}/suivi/")
            assert page.inner_text("h1") == "Retrouver un signalement"
            assert axe_violations(page) == []
            page.fill("#reference", ref.lower().replace("-", " "))  # as a person may type it
            page.click("button[type=submit]")
            page.wait_for_url(f"**/suivi/{ref}")
            assert page.inner_text("h1") == "Suivi d'un signalement"
            summary = page.inner_text(".facts")
            assert ref in summary and "Montveille" in summary
            history = page.inner_text("table")
            for step in ("Signalement reçu", "Transmis au service compétent",
                         "Pris en compte par le service compétent", "Intervention en cours"):
                assert step in history
            html = page.content()
            for private in ("claire@", "Durand", "Tilleuls", "Musique", "48.15", "-1.70", str(incident_id)):
                assert private not in html, private
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            assert axe_violations(page) == []
            screenshot(page, "tracking-page")
            link = UnsubscribeLinks(KEYS["VEILLE_NOTIFY_LINK_KEY"], base).url(ref, incident_id)
            page.goto(link)
            assert page.inner_text("h1") == "Ne plus être informé"
            assert axe_violations(page) == []
            page.click("button[type=submit]")
            assert "C'est fait" in page.inner_text("h1")
            assert axe_violations(page) == []
            screenshot(page, "tracking-unsubscribed")
            page.goto(f"{base}/suivi/0000-0000-0000-0000")
            assert "Aucun signalement" in page.inner_text("main") or page.inner_text(".alert")
            assert axe_violations(page) == []
            assert errors.messages == [] or all("404" in m for m in errors.messages)
    finally:
        intake.stop()
    log = intake.log()
    assert ref not in log and link.rsplit("/", 1)[1] not in log and "claire@" not in log
    assert '"GET /suivi/… HTTP' in log


def _up(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False
