"""Helpers of the desk's tests: a book filled by hand, the desk on an app, logging in."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from response_helpers import delivery, routed_dispatch

from veille.config import Settings
from veille.deliver.links import UsedLinks
from veille.producers import desk, response
from veille.producers.desk.accounts import ACCOUNTS_FILE, AccountStore
from veille.producers.desk.book import DeskBook
from veille.producers.gate import intake_config
from veille.producers.http_intake import make_app
from veille.producers.intake_keys import KeyStore
from veille.producers.sdk import Publisher
from veille.schemas.models import DeliveryReceipt, Dispatch, ServiceKind, StatusUpdate
from veille.territory import load_territory

Client = TestClient[Any, Any]
Scenario = Callable[[Client], Awaitable[None]]
Routes = Callable[[web.Application], None]
CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')
PASSWORD = "mot-de-passe-de-test"
__all__ = ["routed_dispatch"]


def accounts(settings: Settings) -> AccountStore:
    """Two bodies: Montveille's town hall (an agent and a chef) and Saint-Méen's (an agent)."""
    store = AccountStore(settings.state_dir / ACCOUNTS_FILE)
    if not store.accounts():
        store.issue("Services techniques", agency_id="mairie-35401", login="voirie-montveille",
                    password=PASSWORD)
        store.issue("Chef des services", agency_id="mairie-35401", role="chef", login="chef-montveille",
                    password=PASSWORD)
        store.issue("Services techniques", agency_id="mairie-35402", login="voirie-saint-meen",
                    password=PASSWORD)
    return store


def receipt(d: Dispatch, outcome: str = "delivered") -> DeliveryReceipt:
    return DeliveryReceipt(dispatch_id=d.id, agency_id=d.agency_id, method="webhook", attempt=1,
                           outcome=outcome, latency_ms=12, at=datetime.now(UTC))


def update(d: Dispatch, status: str, **over: Any) -> StatusUpdate:
    import uuid

    data = {"id": uuid.uuid4(), "incident_id": d.event_id, "agency_id": d.agency_id, "dispatch_id": d.id,
            "status": status, "at": datetime.now(UTC), **over}
    return StatusUpdate.model_validate(data)


def filled_book(settings: Settings) -> tuple[DeskBook, dict[str, Dispatch]]:
    """A dispatch of Montveille's public works, one of Saint-Méen's, and the same incident as
    Montveille's sent to its stormwater syndicate as well (cross-boundary work)."""
    book = DeskBook()
    mine = routed_dispatch(settings)
    theirs = routed_dispatch(settings, agency="mairie-35402", municipality="35402",
                             location={"lat": 48.2, "lon": -1.6})
    shared = routed_dispatch(settings, service=ServiceKind.stormwater, agency="syndicat-eaux-veille")
    shared = Dispatch.model_validate({**shared.model_dump(), "event_id": mine.event_id,
                                      "payload": mine.payload})
    for d in (mine, theirs, shared):
        book.apply(d)
    book.caught_up.set()
    return book, {"mine": mine, "theirs": theirs, "shared": shared}


def run_desk(settings: Settings, book: DeskBook, scenario: Scenario, *, publisher: bool = False,
             response_page: bool = False, extra_routes: Routes | None = None) -> None:
    """The desk on an intake app; with ``publisher`` a real one (broker), else no gate at all;
    with ``response_page`` the e-mails' response page too, landing on the desk."""
    async def main() -> None:
        if publisher:
            config = replace(intake_config(settings, KeyStore(settings.state_dir / "no-keys.json")),
                             ack_timeout=10)
            pub = Publisher(settings, client_id="test-desk", known_agencies=set(load_territory().agencies))
            app = make_app(pub, config)
        else:
            app = web.Application()
        desk_app = desk.register(app, load_territory(), settings, accounts=accounts(settings), book=book,
                                 feed=False, extra_routes=extra_routes)
        if response_page:
            response.register(app, settings, delivery(), load_territory(),
                              used=UsedLinks(settings.state_dir / "used.json", timedelta(days=8)),
                              landing=desk.landing(desk_app, settings))
        async with TestClient(TestServer(app)) as client:
            await scenario(client)

    asyncio.run(main())


async def csrf_of(client: Client, path: str) -> str:
    resp = await client.get(path)
    page = await resp.text()
    assert resp.status == 200, page
    token = CSRF.search(page)
    assert token, page
    return html.unescape(token.group(1))


async def log_in(client: Client, login: str, password: str = PASSWORD) -> Any:
    token = await csrf_of(client, "/agence/connexion")
    return await client.post("/agence/connexion", data={"csrf_token": token, "login": login,
                                                        "password": password},
                             allow_redirects=False)


async def act(client: Client, dispatches: list[str], status: str, *, token: str | None = None,
              action_id: str | None = None, json: bool = True, **fields: str) -> Any:
    import uuid

    token = token or await csrf_of(client, "/agence/")
    data: list[tuple[str, str]] = [("csrf_token", token), ("action_id", action_id or str(uuid.uuid4())),
                                   ("status", status), *(("dispatch",
                                                          d) for d in dispatches), *fields.items()]
    headers = {"Accept": "application/json"} if json else {}
    return await client.post("/agence/actions", data=data, headers=headers, allow_redirects=False)
