"""A representative's page in a real headless Chromium, on a real `veille intake serve`, broker
and router: keyboard only, axe-core clean; *besoin d'aide* becomes a routed incident; the
register's names are on no topic and in no log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_helpers import AXE_JS, AXE_TAGS, ConsoleErrors, launch_browser, screenshot
from hub_helpers import HubProcess, hub_settings, read_topics, wait_for
from pcs_helpers import cascade_events, free_port, raw_topic_bytes

from veille.config import Settings
from veille.pcs import events
from veille.pcs.cascade import activation_id, start
from veille.pcs.messages import PageLinks
from veille.pcs.plan import PCS_FILE, read_plan
from veille.pcs.register import KEY_ENV, REGISTER_DIR, Register, new_key
from veille.topics import Topics

pytestmark = pytest.mark.kafka

LINK_KEY = "pcs-browser-link-key"
NAMES = ("Germaine Lebrun-Quintard", "Marcel Oudinot")


def axe_violations(page: Any) -> list[dict[str, Any]]:
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})",
                           list(AXE_TAGS))
    return [{"id": v["id"], "targets": [n["target"] for n in v["nodes"]]} for v in result["violations"]]


def focus_on(page: Any, element_id: str, limit: int = 20) -> None:
    for _ in range(limit):
        if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"#{element_id} never got the focus by Tab")


def test_check_on_registered_persons_by_keyboard(kafka: Any, tmp_path: Path) -> None:
    settings = hub_settings(kafka.settings, tmp_path / "state")
    key = new_key()
    reg = Register(settings.state_dir / REGISTER_DIR, key.encode())
    a = reg.add("35401", name=NAMES[0], address="12 rue de la Gare", needs="oxygène",
                representative="r-35401-gare")
    b = reg.add("35401", name=NAMES[1], address="3 avenue du Stade", needs="",
                representative="r-35401-gare")
    reg.add("35401", name="Autre Secteur", address="1 place", needs="", representative="r-35401-centre")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    plan = read_plan(Path(Settings().territory_dir) / PCS_FILE).municipalities["35401"]
    act = activation_id("35401", "browser-alert")
    [(_, note)] = start(plan, act, "35401", ("r-35401-gare",), 0)
    url = PageLinks(LINK_KEY, base).url(note, "heatwave")
    intake = HubProcess(settings, "intake", "serve", "--port", str(port), env={
        KEY_ENV: key, "VEILLE_NOTIFY_LINK_KEY": LINK_KEY, "VEILLE_NOTIFY_PUBLIC_BASE_URL": base}).start()
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    try:
        with httpx.Client(timeout=10) as client:
            wait_for(lambda: _up(client, base), 60, "the intake")
            assert client.get(f"{base}/pcs/forged-token").status_code == 404
        with launch_browser() as browser:
            context = browser.new_context(locale="fr-FR")
            context.add_init_script(path=str(AXE_JS))
            page = context.new_page()
            errors = ConsoleErrors(page)
            page.goto(url)
            text = page.inner_text("main")
            assert NAMES[0] in text and NAMES[1] in text and "Autre Secteur" not in text
            assert "Que faire" in text
            assert axe_violations(page) == []
            screenshot(page, "pcs-page")
            focus_on(page, "vu-1")
            page.keyboard.press("Space")  # Germaine: vu, tout va bien
            page.keyboard.press("Tab")  # to Marcel's group
            page.keyboard.press("ArrowDown")  # besoin d'aide
            assert page.is_checked("#aide-2") and page.is_checked("#vu-1")
            page.keyboard.press("Tab")
            page.keyboard.press("Enter")
            page.wait_for_selector("[role=status]")
            assert "1 demande(s) d'aide" in page.inner_text("main")
            assert axe_violations(page) == []
            screenshot(page, "pcs-page-done")
            assert errors.messages == []
        evs = cascade_events(settings, lambda out: len(out) >= 3, timeout=60)
        acks = [e for e in evs if isinstance(e, events.AckEvent)]
        checks = {e.person: e.status for e in evs if isinstance(e, events.CheckEvent)}
        assert [(x.owner, x.by) for x in acks] == [("r-35401-gare", "r-35401-gare")]
        assert checks == {a.id: events.CheckStatus.seen, b.id: events.CheckStatus.needs_help}
        topic = Topics(settings.topic_prefix).routed
        out = read_topics(settings, [topic], timeout=90, until=lambda out: any(
            d.record_type == "RoutedIncident" for _, d in out))
        routed = [d.value for _, d in out if d.record_type == "RoutedIncident"]
        assert len(routed) == 1
        inc = routed[0]
        assert inc["channel"] == "neighbourhood_representative" and inc["category"] == "heatwave"
        assert inc["dispatches"], inc
        t = Topics(settings.topic_prefix)
        everything = raw_topic_bytes(settings, [t.pcs_cascade, t.routed, t.intake("35401")])
        for secret in ("Germaine", "Marcel", "Oudinot", "oxyg"):
            assert secret.encode() not in everything
            assert secret not in intake.log() and secret not in router.log()
    finally:
        router.stop()
        intake.stop()


def _up(client: httpx.Client, base: str) -> bool:
    try:
        return client.get(f"{base}/healthz").status_code == 200
    except httpx.HTTPError:
        return False
