"""The agencies' desk, served by the HTTP intake under ``/agence/``: the bodies with no incident
system of their own see, take and close their dispatches in a browser.

``accounts``: per-body accounts and their CLI (``veille agency accounts``); ``book``: the read
model and the one rule of who sees what; ``feed``: its Kafka consumer; ``session``: the
encrypted cookie (SameSite=Lax, shared with single sign-on's routes); ``forms``, ``actions``:
what an action publishes; ``present``: labels and deadlines; ``views``, ``pages``,
``templates/``, ``static/``: the pages, their script (polling, map, offline queue) and style.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from veille.config import Settings
from veille.photos.links import PhotoLinks
from veille.photos.settings import PhotoSettings
from veille.producers.desk import cases, views
from veille.producers.desk.accounts import ACCOUNTS_FILE, AccountStore
from veille.producers.desk.actions import Sent
from veille.producers.desk.book import DeskBook
from veille.producers.desk.feed import DeskFeed
from veille.producers.desk.session import install, peek
from veille.producers.gate import TokenBuckets
from veille.territory import Territory
from veille.web.assets import add_vendor_routes
from veille.web.oidc.config import OidcSettings

PREFIX = "/agence"
STATIC_DIR = Path(__file__).with_name("static")
RELAY_STATIC_DIR = Path(__file__).parent.parent / "relay" / "static"  # the offline queue's script
DESK_KEY = web.AppKey("desk_app", web.Application)


def sso_login_url(settings: Settings) -> str | None:
    """Hook for single sign-on: the address of the identity provider's login route on the desk
    when ``settings`` configure one (the login page then shows its button), else None."""
    return f"{PREFIX}/oidc/login" if OidcSettings().configured else None


def register(app: web.Application, territory: Territory, settings: Settings, *,
             accounts: AccountStore | None = None, book: DeskBook | None = None, feed: bool = True,
             extra_routes: Callable[[web.Application], None] | None = None) -> web.Application:
    """Mount the desk on the intake ``app`` (before it starts); returns the desk's sub-app.

    ``book``: the read model (a new one fed from Kafka by default; ``feed=False`` for tests that
    fill it themselves); ``extra_routes``: adds routes to the desk's sub-application, which
    share its session (single sign-on's ``/agence/oidc/…``), before it is mounted.
    """
    desk = web.Application()
    book = book or DeskBook()
    desk[views.MAIN_APP_KEY] = app
    desk[views.BOOK_KEY] = book
    desk[views.ACCOUNTS_KEY] = accounts or AccountStore(settings.state_dir / ACCOUNTS_FILE)
    desk[views.TERRITORY_KEY] = territory
    desk[views.HOURS_KEY] = settings.relay_session_hours
    desk[views.LOGIN_BUCKETS_KEY] = TokenBuckets()
    desk[views.SENT_KEY] = Sent()
    desk[views.PHOTO_LINKS_KEY] = PhotoLinks.from_settings(PhotoSettings())
    sso = sso_login_url(settings)
    if sso:
        desk[views.SSO_KEY] = sso
    desk[views.CSRF_KEY] = install(desk, settings)
    add_vendor_routes(desk)
    desk.router.add_static("/static/desk", STATIC_DIR, append_version=True, name="desk-static")
    desk.router.add_static("/static/queue", RELAY_STATIC_DIR, append_version=True, name="desk-queue")
    desk.router.add_get("/", views.inbox, name="desk-inbox")
    desk.router.add_get("/boite", views.inbox_rows, name="desk-rows")
    desk.router.add_get("/connexion", views.login_page, name="desk-login")
    desk.router.add_post("/connexion", views.login)
    desk.router.add_post("/deconnexion", views.logout, name="desk-logout")
    desk.router.add_get("/dispatches/{id}", views.dispatch_page, name="desk-dispatch")
    desk.router.add_post("/actions", views.act, name="desk-act")
    desk.router.add_post("/dossiers/scinder", cases.split, name="desk-split")
    desk.router.add_get("/export.csv", views.export_csv, name="desk-export")
    desk.router.add_get("/zone.geojson", views.zone_geojson, name="desk-zone")
    if extra_routes is not None:
        extra_routes(desk)
    app.add_subapp(PREFIX, desk)
    app.router.add_get(PREFIX, _to_inbox)
    app[DESK_KEY] = desk
    if feed:
        reader = DeskFeed(book, settings, territory.agencies)

        async def start(app: web.Application) -> None:
            reader.start()

        async def stop(app: web.Application) -> None:
            reader.stop()

        app.on_startup.append(start)
        app.on_cleanup.append(stop)
    return desk


def landing(desk: web.Application, settings: Settings) -> Callable[[web.Request, str, str], str | None]:
    """For the e-mails' response page: where a signed link of (agency, dispatch) should land
    instead, when the person opening it has a desk session of that body that sees the dispatch
    (the desk's page of it); None: the single-dispatch response page."""
    def where(request: web.Request, agency_id: str, dispatch_id: str) -> str | None:
        identity = peek(request, settings)
        if identity is None or identity.agency_id != agency_id:
            return None
        if not desk[views.ACCOUNTS_KEY].still_valid(identity):
            return None
        if desk[views.BOOK_KEY].one(agency_id, dispatch_id) is None:
            return None
        return f"{PREFIX}/dispatches/{dispatch_id}"

    return where


async def _to_inbox(request: web.Request) -> web.Response:
    raise web.HTTPPermanentRedirect(PREFIX + "/")
