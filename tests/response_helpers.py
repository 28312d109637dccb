"""Helpers of the response page tests: a dispatch as the router makes it, its link, the page."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from veille.config import Settings
from veille.deliver.links import ResponseLinks, UsedLinks
from veille.deliver.settings import DeliverySettings
from veille.producers import response
from veille.producers.gate import Quota, intake_config
from veille.producers.http_intake import make_app
from veille.producers.intake_keys import KeyStore
from veille.producers.sdk import Publisher
from veille.schemas.models import Dispatch, EventType, Incident, ServiceKind
from veille.territory import load_territory
from veille.territory.dispatch import dispatch_id

Client = TestClient[Any, Any]
Scenario = Callable[[Client], Awaitable[None]]
LINK_KEY = "test-response-link-key"
AGENCY = "mairie-35401"
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def delivery(**over: Any) -> DeliverySettings:
    base = {"link_key": LINK_KEY, "response_base_url": "http://intake.test/reponse"}
    return DeliverySettings(**{**base, **over})


def routed_dispatch(settings: Settings, agency: str = AGENCY, service: ServiceKind = ServiceKind.public_works,
                    **incident: Any) -> Dispatch:
    """A dispatch of a new incident with the id the router derives (its status updates pass it)."""
    now = datetime.now(UTC).replace(microsecond=0)
    event = Incident.model_validate({
        "id": str(uuid.uuid4()), "municipality": "35401", "category": "damaged_road", "severity": "severe",
        "location": {"lat": 48.15, "lon": -1.7002}, "occurred_at": now - timedelta(minutes=20),
        "reported_at": now - timedelta(minutes=5), "channel": "app",
        "description": "Nid-de-poule profond devant l'école", **incident})
    key = settings.dispatch_key.get_secret_value().encode()
    return Dispatch(id=dispatch_id(key, EventType.incident, str(event.id), agency, service),
                    event_type=EventType.incident, event_id=str(event.id), agency_id=agency, service=service,
                    rule="voirie", cross_boundary=False, municipality=event.municipality,
                    category=event.category.value, severity=event.severity.value,
                    reported_at=event.reported_at, routed_at=now, payload=event.encode())


def link_path(d: Dispatch, settings: DeliverySettings | None = None) -> str:
    """The path part of the dispatch's link (the base URL is the deployment's)."""
    s = settings or delivery()
    url = ResponseLinks.from_settings(s).for_dispatch(s.response_base_url, d)
    assert url is not None and url.startswith(s.response_base_url)
    return "/reponse" + url[len(s.response_base_url):]


def mount(app: web.Application, settings: Settings, used: UsedLinks, delivery_settings: DeliverySettings,
          **quotas: Quota) -> None:
    response.register(app, settings, delivery_settings, load_territory(), used=used, **quotas)


def run_page(settings: Settings, used: UsedLinks, scenario: Scenario,
             delivery_settings: DeliverySettings | None = None, **quotas: Quota) -> None:
    """The page alone on an app without a gate: everything but a publication (no broker)."""
    async def main() -> None:
        app = web.Application()
        mount(app, settings, used, delivery_settings or delivery(), **quotas)
        async with TestClient(TestServer(app)) as client:
            await scenario(client)

    asyncio.run(main())


def run_intake(settings: Settings, used: UsedLinks, scenario: Scenario, **quotas: Quota) -> None:
    """The intake app with the response page, in this process, on the real broker."""
    config = replace(intake_config(settings, KeyStore(settings.state_dir / "no-keys.json")), ack_timeout=10)

    async def main() -> None:
        agencies = set(load_territory().agencies)
        publisher = Publisher(settings, client_id="test-response", known_agencies=agencies)
        app = make_app(publisher, config)
        mount(app, settings, used, delivery(), **quotas)
        async with TestClient(TestServer(app)) as client:
            await scenario(client)

    asyncio.run(main())


async def csrf_of(client: Client, path: str) -> str:
    resp = await client.get(path)
    page = await resp.text()
    assert resp.status == 200, page
    token = CSRF.search(page)
    assert token, page
    return token.group(1)


async def answer(client: Client, path: str, status: str, **fields: str) -> Any:
    """Open the page (session and CSRF token), then answer ``status``; the 303 is not followed."""
    data = {"csrf_token": await csrf_of(client, path), "status": status, **fields}
    return await client.post(path, data=data, allow_redirects=False)
