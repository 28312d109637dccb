"""The demo's step end to end on the real broker: router, sink and escalation worker running,
``run_followup_demo`` plays the bodies; the store counts the re-routing and the escalation,
and the console's chain page shows both chains in headless Chromium (axe-core clean).
Screenshots: test-artifacts/screenshots/chain-*.png."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_helpers import ConsoleErrors, axe_violations, launch_browser, screenshot
from escalation_helpers import deployment
from hub_helpers import HubProcess, settings_env, wait_for

from veille.local.demo_followup import run_followup_demo
from veille.territory import load_territory

pytestmark = pytest.mark.kafka


def test_demo_step_store_and_console_chain(kafka: Any, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    # The example territory's own deadlines (the demo's theft is 9 h old, the police has 8 h).
    deadlines = load_territory().rules.model_dump(mode="json")["response_deadlines"]
    settings = deployment(kafka, tmp_path, deadlines)
    settings = settings.model_copy(update={"sink_batch_seconds": 0.2})
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    sink = HubProcess(settings, "sink", "run", "--port", "0").start()
    try:
        router.info("router.json")
        url = sink.info("sink.json")["url"]
        env = {k: v for k, v in settings_env(settings).items() if k.startswith("VEILLE_")}
        assert run_followup_demo(settings, settings, tmp_path / "logs", env, load_territory(), url)
        printed = capsys.readouterr().out
        with capsys.disabled():  # what `veille demo` prints for this step, in the test's log
            print(printed)
        assert "re-routed  -> Police municipale de Saint-Méen-la-Rivière" in printed, printed
        assert "escalated  -> Mairie de Saint-Méen-la-Rivière" in printed, printed
        chains = re.findall(r"console: (\S+/console/chain\?incident=\S+)", printed)
        assert len(chains) == 2

        def stored() -> bool:
            pages = [httpx.get(u, timeout=30) for u in chains]
            return all(p.status_code == 200 and f"step-{kind}" in p.text
                       for p, kind in zip(pages, ("rerouted", "escalated"), strict=True))

        wait_for(stored, 60, "the sink to store both chains")
        with launch_browser() as browser:
            for name, chain_url in zip(("rerouted", "escalated"), chains, strict=True):
                page = browser.new_page(viewport={"width": 1200, "height": 800}, locale="fr-FR")
                errors = ConsoleErrors(page)
                page.goto(chain_url)
                page.wait_for_selector("#chain-steps")
                kinds = page.eval_on_selector_all("#chain-steps tbody tr",
                                                  "rows => rows.map(r => r.className)")
                assert f"step-{name}" in kinds and kinds[0] == "step-dispatched", kinds
                assert axe_violations(page) == []
                screenshot(page, f"chain-{name}")
                assert errors.messages == []
            # From the console itself: its lookup form opens the chain by the incident's id.
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="fr-FR")
            page.goto(f"{url}/console/")
            page.fill("#chain-id", chains[1].rsplit("=", 1)[1])
            page.click("#chain-form button")
            page.wait_for_selector("#chain-steps")
            assert "step-escalated" in page.eval_on_selector_all("#chain-steps tbody tr",
                                                                 "rows => rows.map(r => r.className)")
        assert httpx.get(f"{url}/console/chain", params={"incident": "nope"}, timeout=30).status_code == 400
    finally:
        sink.stop()
        router.stop()
