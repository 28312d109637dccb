"""The reporting form of the human relays (town-hall desks, phone operators, neighbourhood
representatives), served by the HTTP intake under ``/relais/``.

``accounts``: per-municipality accounts and their CLI (``veille relay accounts``);
``session``: encrypted cookie sessions; ``forms``: WTForms fields, French errors, CSRF;
``views``: the pages and the report endpoint; ``static/``: the page's script (map,
category search, offline queue) and style.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from veille.config import Settings
from veille.producers.gate import TokenBuckets
from veille.producers.relay import views
from veille.producers.relay.accounts import ACCOUNTS_FILE, AccountStore
from veille.producers.relay.session import install
from veille.territory import Territory
from veille.web.assets import add_vendor_routes

PREFIX = "/relais"
STATIC_DIR = Path(__file__).with_name("static")


def register(app: web.Application, territory: Territory, settings: Settings,
             accounts: AccountStore | None = None, book_key: web.AppKey | None = None) -> None:
    """Mount the relays' pages on the intake ``app`` (before it starts).

    ``book_key``: where ``app`` keeps the Open311 read model (statuses of sent reports).
    """
    relay = web.Application()
    relay[views.MAIN_APP_KEY] = app
    relay[views.ACCOUNTS_KEY] = accounts or AccountStore(settings.state_dir / ACCOUNTS_FILE)
    relay[views.TERRITORY_KEY] = territory
    relay[views.HOURS_KEY] = settings.relay_session_hours
    relay[views.LOGIN_BUCKETS_KEY] = TokenBuckets()
    if book_key is not None:
        relay[views.BOOK_LOOKUP_KEY] = book_key
    relay[views.CSRF_KEY] = install(relay, settings, PREFIX + "/")
    add_vendor_routes(relay)
    relay.router.add_static("/static/relay", STATIC_DIR, append_version=True, name="relay-static")
    relay.router.add_get("/", views.form_page, name="relay-form")
    relay.router.add_get("/connexion", views.login_page, name="relay-login")
    relay.router.add_post("/connexion", views.login)
    relay.router.add_post("/deconnexion", views.logout, name="relay-logout")
    relay.router.add_post("/signalements", views.send_report, name="relay-send")
    relay.router.add_get("/signalements/{id}", views.report_status, name="relay-status-json")
    relay.router.add_get("/suivi", views.status_page, name="relay-status")
    relay.router.add_get("/territoire.geojson", views.territory_geojson, name="relay-territory")
    app.add_subapp(PREFIX, relay)
    app.router.add_get(PREFIX, _to_form)


async def _to_form(request: web.Request) -> web.Response:
    """/relais (no slash) is the address people type."""
    raise web.HTTPPermanentRedirect(PREFIX + "/")
