"""Helpers of the relays' form tests: an intake with the relays' pages, logging in, form fields."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

import httpx
from aiohttp.test_utils import TestClient, TestServer

from veille.config import Settings
from veille.producers import open311, relay
from veille.producers.gate import intake_config
from veille.producers.http_intake import make_app
from veille.producers.intake_keys import KeyStore
from veille.producers.open311_requests import RequestBook
from veille.producers.relay.accounts import AccountStore
from veille.producers.relay.forms import LOCAL_TZ
from veille.producers.sdk import Publisher
from veille.territory import load_territory

Client = TestClient[Any, Any]
IN_35401 = (48.15, -1.7002)  # lat, lon inside Montveille
IN_35406 = (48.046, -1.5595)  # inside Trémel-en-Lande
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
REPORT_ID = re.compile(r'id="report_id" name="report_id" type="hidden" value="([^"]+)"')


def accounts(settings: Settings) -> AccountStore:
    return AccountStore(settings.state_dir / f"relay-{uuid.uuid4().hex[:6]}.json")


Scenario = Callable[[Client, RequestBook], Awaitable[None]]


def run(settings: Settings, store: AccountStore, scenario: Scenario) -> None:
    """The intake app with Open311 and the relays' pages, in this process, on the real broker."""
    config = replace(intake_config(settings, KeyStore(settings.state_dir / "no-keys.json")), ack_timeout=10)

    async def main() -> None:
        publisher = Publisher(settings, client_id="test-relay", known_municipalities={"35401", "35406"})
        app = make_app(publisher, config)
        book = RequestBook()  # fed by the test: the routed topic is the router's, not started here
        open311.register(app, load_territory(), book)
        relay.register(app, load_territory(), settings, store, book_key=open311.BOOK_KEY)
        async with TestClient(TestServer(app)) as client:
            await scenario(client, book)

    asyncio.run(main())


async def log_in(client: Client, login: str, password: str) -> Any:
    page = await (await client.get("/relais/connexion")).text()
    token = CSRF.search(page)
    assert token, page
    return await client.post("/relais/connexion", data={"login": login, "password": password,
                                                        "csrf_token": token.group(1)}, allow_redirects=False)


async def form_tokens(client: Client) -> tuple[str, str]:
    resp = await client.get("/relais/")
    assert resp.status == 200, await resp.text()
    page = await resp.text()
    csrf, report_id = CSRF.search(page), REPORT_ID.search(page)
    assert csrf and report_id, page
    return csrf.group(1), report_id.group(1)


def report(csrf: str, report_id: str, **overrides: Any) -> dict[str, str]:
    now = datetime.now(LOCAL_TZ).strftime("%Y-%m-%dT%H:%M")
    data = {"csrf_token": csrf, "report_id": report_id, "category": "broken_streetlight",
            "severity": "moderate",
            "description": "Le lampadaire devant l'école est éteint depuis trois jours", "occurred_at": now,
            "municipality": "35401", "lat": str(IN_35401[0]), "lon": str(IN_35401[1]), "address": "",
            "contact_name": "", "contact_phone": "", "contact_email": ""}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def log_in_with_printed_lines(printed: str) -> httpx.Client:
    """Log in to the relays' form with the URL and login the demo printed; the client keeps
    the session (close it). Asserts the redirect to the form that a good login gets."""
    form = re.search(r"(http://127\.0\.0\.1:\d+/relais/)", printed)
    login = re.search(r"login (\S+)  password (\S+)", printed)
    assert form and login, printed
    client = httpx.Client(base_url=form.group(1), timeout=30)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', client.get("connexion").text)
    assert token
    resp = client.post("connexion", data={"login": login.group(1), "password": login.group(2),
                                          "csrf_token": token.group(1)})
    assert resp.status_code == 303 and resp.headers["location"] == "/relais/", resp.text[:500]
    return client
