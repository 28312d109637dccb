"""The e-mails' response page in a real headless Chromium, on a real `veille intake serve` and broker.

On a phone: open the link of a dispatch, read what it is about, choose *résolu*, send, see the
confirmation; the StatusUpdate is on the status topic with the link's dispatch, agency and
incident. axe-core finds nothing on the page, with the reasons of a refusal shown, nor on the
confirmation. The intake's log holds neither the link's token nor the holder's address.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import AXE_JS, AXE_TAGS, ConsoleErrors, launch_browser, screenshot
from hub_helpers import HubProcess, hub_settings, read_topics
from response_helpers import AGENCY, LINK_KEY, delivery, routed_dispatch

from veille.deliver.links import ResponseLinks
from veille.schemas.models import IncidentStatus, StatusUpdate
from veille.topics import Topics

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
         "has_touch": True, "locale": "fr-FR", "timezone_id": "Europe/Paris"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: HubProcess) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            assert proc.proc is not None and proc.proc.poll() is None, proc.log()
            time.sleep(0.3)
    raise AssertionError(f"intake not ready:\n{proc.log()}")


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core was added as an init script: the page's CSP allows no script at all."""
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})",
                           list(AXE_TAGS))
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "targets": [n["target"] for n in v["nodes"]]} for v in result["violations"]]


def test_answer_resolved_from_a_phone(kafka: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = hub_settings(kafka.settings, tmp_path / "state")
    monkeypatch.setenv("VEILLE_DELIVERY_LINK_KEY", LINK_KEY)  # the intake's key: the links' key
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    s = delivery(response_base_url=base + "/reponse")
    d = routed_dispatch(settings)
    link = ResponseLinks.from_settings(s).for_dispatch(s.response_base_url, d)
    assert link is not None
    intake = HubProcess(settings, "intake", "serve", "--port", str(port)).start()
    try:
        _wait_ready(base, intake)
        with launch_browser() as browser:
            context = browser.new_context(**PHONE)
            context.add_init_script(path=str(AXE_JS))
            page = context.new_page()
            errors = ConsoleErrors(page)
            page.goto(link)
            assert page.inner_text("h1") == "Répondre à un signalement"
            facts = page.inner_text(".facts")
            assert "Chaussée dégradée" in facts and "Montveille (35401)" in facts
            assert "Mairie de Montveille" in facts
            # Nothing wider than the phone: no sideways scrolling.
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            assert page.is_hidden("#reason")  # the reasons show once "pas de notre ressort" is chosen
            page.click("label[for=status-rejected]")
            assert page.is_visible("#reason") and page.is_visible("#detail")
            assert axe_violations(page) == []
            screenshot(page, "response-page-rejected-chosen")
            page.click("label[for=status-resolved]")
            assert page.is_hidden("#reason")
            assert axe_violations(page) == []
            screenshot(page, "response-page")
            page.click("button[type=submit]")
            page.wait_for_url("**?transmis=resolved")
            assert "Votre réponse « Résolu » a été transmise" in page.inner_text("#sent")
            # Résolu is spent; the other answers are still offered.
            assert page.is_disabled("#status-resolved") and page.is_enabled("#status-on_site")
            assert axe_violations(page) == []
            screenshot(page, "response-page-sent")
            assert errors.messages == []
    finally:
        intake.stop()
    topic = Topics(settings.topic_prefix).status
    records = read_topics(settings, [topic], timeout=20, until=lambda rs: len(rs) >= 1)
    (update,) = [StatusUpdate.from_avro(r.value) for _, r in records]
    assert update.dispatch_id == d.id and update.agency_id == AGENCY
    assert update.incident_id == uuid.UUID(d.event_id) and update.status == IncidentStatus.resolved
    log = intake.log()
    token = link.rsplit("/", 1)[1]
    assert f"/reponse/{d.id}/…" in log and token not in log and "127.0.0.1 \"GET /reponse" not in log
