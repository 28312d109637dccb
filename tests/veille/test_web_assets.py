"""The vendored front-end libraries load in a real Chromium from our own aiohttp server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web
from browser_helpers import ConsoleErrors, axe_violations, launch_browser, screenshot

from veille.web.assets import VENDOR_PREFIX, add_vendor_routes

PAGE = f"""<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>Essai</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{VENDOR_PREFIX}/leaflet.css">
<script src="{VENDOR_PREFIX}/leaflet.js"></script><script src="{VENDOR_PREFIX}/uPlot.iife.min.js"></script>
</head><body><main><h1>Essai</h1><div id="map" style="height:200px"></div></main>
<script>const map = L.map('map').setView([48.11, -1.68], 12);
L.circle([48.11, -1.68], {{radius: 500}}).addTo(map);</script></body></html>"""


@pytest.fixture
def server_url() -> Iterator[str]:
    app = web.Application()
    add_vendor_routes(app)
    app.router.add_get("/", lambda _req: web.Response(text=PAGE, content_type="text/html"))
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_vendored_libraries_load_offline_in_chromium(server_url: str) -> None:
    with launch_browser() as browser:
        page = browser.new_page()
        errors = ConsoleErrors(page)
        failed: list[str] = []
        page.on("requestfailed", lambda req: failed.append(req.url))
        page.goto(server_url + "/")
        assert page.evaluate("typeof L.map") == "function"
        assert page.evaluate("typeof uPlot") == "function"
        assert page.locator("#map path.leaflet-interactive").count() == 1
        assert axe_violations(page) == []
        screenshot(page, "web-assets")
        assert failed == [] and errors.messages == []
