"""`veille demo --keep-running` on the session broker: prints `console: <url>`, the console opens on
the demo's data in headless Chromium, the relays' form line and its demo login work, and SIGTERM
(as Ctrl-C) stops what the demo started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from typing import TYPE_CHECKING

import httpx
import pytest
from browser_helpers import ConsoleErrors, launch_browser, screenshot
from relay_helpers import log_in_with_printed_lines

if TYPE_CHECKING:
    from conftest import KafkaFixture

pytestmark = pytest.mark.kafka


def test_keep_running_prints_the_console_and_stops_on_signal(kafka: KafkaFixture) -> None:
    prefix = f"demo{uuid.uuid4().hex[:8]}"
    # The session's state dir, so the demo finds the running broker and leaves it running; its
    # own topic prefix and database keep its data apart.
    env = {**os.environ, "VEILLE_STATE_DIR": str(kafka.settings.state_dir), "VEILLE_TOPIC_PREFIX": prefix,
           "VEILLE_CLICKHOUSE_DATABASE": prefix, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "veille.cli", "demo", "--keep-running", "--seconds", "2",
                             "--rate", "20", "--seed", "7"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 240
        url = ""
        while time.monotonic() < deadline and not url:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("console: "):
                url = line.split()[1]
        assert url.startswith("http://127.0.0.1:") and "/console/" in url, "".join(lines)
        with launch_browser() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors = ConsoleErrors(page)
            page.goto(url)
            page.wait_for_function("document.body.dataset.ready")
            assert int(page.text_content("#kpi-reports").replace("\u202f", "")) > 0
            assert page.locator("#map path.muni").count() == 6
            assert page.locator("#chart-category .uplot").count() == 1
            screenshot(page, "demo-console")
            assert errors.messages == []
        # The relays' form, served by the intake the demo started, takes the printed login.
        printed = "".join(lines)
        assert re.search(r"Relays' form \(.*\): http://127\.0\.0\.1:\d+/relais/", printed), printed
        log_in_with_printed_lines(printed).close()
        # Still up until told to stop.
        assert httpx.get(url.split("/console/")[0] + "/healthz", timeout=10).status_code == 200
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=90)
        lines.append(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(lines)
    assert proc.returncode == 0, out
    assert "stopped sink" in out and "stopped router" in out and "stopped intake" in out
    assert "stopped the local broker" not in out
    assert kafka.broker.status().running
