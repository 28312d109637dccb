"""A real headless Chromium (Debian's package) driven by Playwright for the web pages' tests.

Playwright never downloads a browser here: it launches the system ``chromium`` found on PATH
(installed by ``make tools``). Without it the browser tests are skipped with the reason.
Screenshots go to ``test-artifacts/screenshots`` (kept by CI, ignored by git).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
AXE_JS = Path(__file__).resolve().parent.parent / "veille" / "web" / "vendor" / "axe.min.js"
# Without the background-networking flags Chromium keeps calling home, and a closed network
# answers every one of those attempts with an error.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def launch_browser() -> Iterator[Any]:
    """A Playwright Browser on the system Chromium (skips the test when there is none)."""
    exe = chromium_path()
    if exe is None:
        pytest.skip("no chromium on PATH (make tools installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


class ConsoleErrors:
    """Collects what the page logged as an error or threw: a page under test must have none."""

    def __init__(self, page: Any) -> None:
        self.messages: list[str] = []
        page.on("console", lambda msg: self.messages.append(f"console.{msg.type}: {msg.text}")
                if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.messages.append(f"pageerror: {exc}"))


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


AXE_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")


def axe_violations(page: Any, tags: tuple[str, ...] = AXE_TAGS) -> list[dict[str, Any]]:
    """Runs axe-core in the page; returns the violations (id, impact, help, nodes' targets)."""
    page.add_script_tag(path=str(AXE_JS))
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", list(tags))
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "targets": [n["target"] for n in v["nodes"]]} for v in result["violations"]]
