"""Residents hear back, on the intake: the public tracking page ``/suivi/<reference>``, the
unsubscribe links of the notifier's messages, and the consents the front-ends take.

``consent``: a consent as the front-ends receive it; ``views``: the pages; ``templates/`` and
``static/``: French HTML without script. The read model is the intake's Open311 one
(``producers/open311_requests.py``), indexed by reference; consents and withdrawals go to
``<prefix>.notify.consent`` through a :class:`~veille.notify.consent.ConsentWriter`.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from veille.notify.consent import ConsentWriter
from veille.notify.links import UnsubscribeLinks
from veille.notify.reference import reference
from veille.notify.settings import NotifySettings
from veille.producers.gate import Quota, TokenBuckets
from veille.producers.open311_requests import RequestBook
from veille.producers.tracking import views
from veille.territory import Territory

PREFIX = "/suivi"
STATIC_DIR = Path(__file__).with_name("static")
NOTIFY_KEY = web.AppKey("tracking_notify", NotifySettings)
CONSENTS_KEY = web.AppKey("tracking_consents", ConsentWriter)


def register(app: web.Application, book: RequestBook, writer: ConsentWriter, notify: NotifySettings,
             territory: Territory | None = None, *, quota: Quota = views.ADDRESS_QUOTA) -> None:
    """Mount the tracking pages on the intake ``app`` and let its front-ends take consents."""
    app[NOTIFY_KEY] = notify
    app[CONSENTS_KEY] = writer
    page = web.Application()
    page[views.BOOK_KEY] = book
    page[views.WRITER_KEY] = writer
    page[views.LINKS_KEY] = UnsubscribeLinks(notify.link_key.get_secret_value(), notify.public_base_url)
    names = {code: m.name for code, m in territory.municipalities.items()} if territory else {}
    page[views.NAMES_KEY] = names
    page[views.BUCKETS_KEY] = TokenBuckets()
    page[views.QUOTA_KEY] = quota
    page.router.add_static("/static", STATIC_DIR, append_version=True, name="tracking-static")
    page.router.add_get("/", views.lookup, name="tracking-lookup")
    page.router.add_get("/{reference}", views.page, name="tracking-page")
    page.router.add_get("/{reference}/desabonnement/{token}", views.unsubscribe_page)
    page.router.add_post("/{reference}/desabonnement/{token}", views.unsubscribe)
    app.add_subapp(PREFIX, page)

    async def close(_app: web.Application) -> None:
        writer.close()

    app.on_cleanup.append(close)


def reference_of(notify: NotifySettings, incident_id: str) -> str:
    return reference(notify.reference_key.get_secret_value(), incident_id)
