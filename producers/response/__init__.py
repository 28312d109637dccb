"""The response page of the delivery e-mails, served by the HTTP intake under ``/reponse/``.

A body that receives its dispatches by e-mail (``veille.deliver.email``) gets in each message
a signed, expiring link ``<VEILLE_DELIVERY_RESPONSE_BASE_URL>/<dispatch id>/<token>``
(``veille.deliver.links``). Whoever holds the e-mail opens it and answers *pris en compte*,
*sur place*, *résolu* or *pas de notre ressort* (with a reason): the page publishes a
StatusUpdate v2 with the dispatch id, the agency and the incident id of the link, exactly as
the agency would, through the gate's ``deliver`` (answered once the broker acknowledged it).

``forms``: the answer, the reasons, CSRF; ``views``: the page and the answer; ``templates/``
and ``static/``: French HTML without script, one column on a phone.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web
from aiohttp_session import setup as setup_sessions
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet

from veille.config import Settings
from veille.deliver.links import ResponseLinks, UsedLinks
from veille.deliver.settings import DeliverySettings
from veille.producers.gate import Quota, TokenBuckets
from veille.producers.relay.session import session_key
from veille.producers.response import views
from veille.producers.response.forms import CSRF_HOURS
from veille.territory import Territory

PREFIX = "/reponse"
STATIC_DIR = Path(__file__).with_name("static")
COOKIE_NAME = "veille_reponse"
DEFAULT_LINK_KEY = DeliverySettings.model_fields["link_key"].default.get_secret_value()
log = logging.getLogger("veille.producers.response")


def register(app: web.Application, settings: Settings, delivery: DeliverySettings | None = None,
             territory: Territory | None = None, *, used: UsedLinks | None = None,
             address_quota: Quota = views.ADDRESS_QUOTA, link_quota: Quota = views.LINK_QUOTA,
             landing: views.Landing | None = None) -> None:
    """Mount the response page on the intake ``app`` (before it starts).

    ``delivery``: the link keys and lifetime (``VEILLE_DELIVERY_*``, read from the environment
    when None); ``territory``: names of the municipalities and agencies on the page (codes
    without it); ``used``: the answered (dispatch, status) pairs (the state dir's by default);
    ``landing``: the agencies' desk's page of a link's dispatch for someone logged in there
    (``veille.producers.desk.landing``): one set of pages, not two.
    """
    delivery = delivery or DeliverySettings()
    if delivery.link_key.get_secret_value() == DEFAULT_LINK_KEY:
        log.warning("response page: VEILLE_DELIVERY_LINK_KEY is the local default; set a key of "
                    "your own outside a demo")
    page = web.Application()
    page[views.MAIN_APP_KEY] = app
    page[views.LINKS_KEY] = ResponseLinks.from_settings(delivery)
    page[views.USED_KEY] = used or UsedLinks.in_state_dir(settings.state_dir, delivery)
    page[views.NAMES_KEY] = views.Names.of(territory)
    page[views.BUCKETS_KEY] = TokenBuckets()
    page[views.QUOTAS_KEY] = (address_quota, link_quota)
    page[views.CSRF_KEY] = _install_sessions(page, settings)
    if landing is not None:
        page[views.LANDING_KEY] = landing
    page.router.add_static("/static", STATIC_DIR, append_version=True, name="response-static")
    page.router.add_get("/{dispatch}/{token}", views.answer_page, name="response-page")
    page.router.add_post("/{dispatch}/{token}", views.answer)
    page.router.add_get("/{dispatch}", views.truncated)
    page.router.add_get("/{dispatch}/", views.truncated)
    app.add_subapp(PREFIX, page)


def _install_sessions(page: web.Application, settings: Settings) -> bytes:
    """Encrypted cookie sessions holding the CSRF secret only; returns the CSRF HMAC key.

    The key is the relays' session key (``VEILLE_RELAY_SESSION_KEY`` or the state dir's), the
    CSRF key derived from it for this page. SameSite=Lax, not Strict: the page is opened from a
    mail client (a cross-site navigation), and a Strict cookie would not come back with it, so
    a second tab would replace the first one's session and its form would expire.
    """
    key = session_key(settings)
    storage = EncryptedCookieStorage(
        Fernet(key), cookie_name=COOKIE_NAME, path=PREFIX + "/", httponly=True, samesite="Lax",
        secure=settings.relay_cookie_secure, max_age=int(CSRF_HOURS * 3600))
    setup_sessions(page, storage)
    return views.csrf_key(key)
