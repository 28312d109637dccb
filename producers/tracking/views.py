"""The public tracking page and the unsubscribe links, mounted under ``/suivi/`` on the intake.

    GET  /suivi/                                     a form to type a reference (?reference=…)
    GET  /suivi/<reference>                          the incident's state and history
    GET  /suivi/<reference>/desabonnement/<token>    a button: stop the messages
    POST /suivi/<reference>/desabonnement/<token>    withdraw the consent at once (also the
                                                     one-click List-Unsubscribe-Post of mail clients)

No key: the reference *is* the capability (80 bits, a keyed MAC of the incident id), and every
request counts against a token bucket per client address (429 with ``Retry-After``), so
references cannot be enumerated. The page shows the category, the municipality and the history
of the overall state with its times and standard texts (a report grouped into a case: the case's
state, and how many reports it holds): never a description, an address, a
point, a contact, a body's free-text note, nor an internal id.
"""

from __future__ import annotations

import logging
from datetime import datetime
from uuid import UUID
from zoneinfo import ZoneInfo

from aiohttp import web

from veille.deliver.view import category_label
from veille.notify.consent import ConsentWriter
from veille.notify.links import UnsubscribeLinks
from veille.notify.reference import normalise
from veille.producers import metrics
from veille.producers.gate import Quota, TokenBuckets
from veille.producers.open311_requests import RequestBook, ServiceRequest
from veille.producers.tracking.pages import render
from veille.web.i18n import page_texts

log = logging.getLogger("veille.producers.tracking")
LOCAL_TZ = ZoneInfo("Europe/Paris")
# Per client address: 30 pages, then one every 2 s: a resident reloading passes, a script trying
# references gets a few hundred an hour out of 2^80.
ADDRESS_QUOTA = Quota(1 / 2, 30)

BOOK_KEY = web.AppKey("tracking_book", RequestBook)
WRITER_KEY = web.AppKey("tracking_writer", ConsentWriter)
LINKS_KEY = web.AppKey("tracking_links", UnsubscribeLinks)
NAMES_KEY = web.AppKey("tracking_names", dict)
BUCKETS_KEY = web.AppKey("tracking_buckets", TokenBuckets)
QUOTA_KEY = web.AppKey("tracking_quota", Quota)


def _t() -> dict[str, str]:
    return page_texts("tracking")


def _when(value: datetime) -> str:
    return value.astimezone(LOCAL_TZ).strftime("%d/%m/%Y à %H:%M")


def _admitted(request: web.Request) -> web.Response | None:
    wait = request.app[BUCKETS_KEY].take(f"addr:{request.remote}", request.app[QUOTA_KEY])
    if wait <= 0:
        return None
    metrics.REJECTED.labels("Tracking", "quota").inc()
    t = _t()
    return render(request, "message.html", status=429, headers={"Retry-After": str(max(1, round(wait)))},
                  title=t["busy_title"], text=t["busy_text"], kind="alert", back=None)


def _unknown(request: web.Request, typed: str = "") -> web.Response:
    return render(request, "lookup.html", status=404, unknown=True, typed=typed,
                  action=str(request.app.router["tracking-lookup"].url_for()))


def _found(request: web.Request, reference: str) -> ServiceRequest | None:
    return request.app[BOOK_KEY].by_reference(reference)


async def lookup(request: web.Request) -> web.Response:
    refused = _admitted(request)
    if refused is not None:
        return refused
    typed = request.query.get("reference", "")[:40]
    action = str(request.app.router["tracking-lookup"].url_for())
    if not typed:
        return render(request, "lookup.html", unknown=False, typed="", action=action)
    reference = normalise(typed)
    if reference is None or _found(request, reference) is None:
        return _unknown(request, typed)
    raise web.HTTPSeeOther(str(request.app.router["tracking-page"].url_for(reference=reference)))


async def page(request: web.Request) -> web.Response:
    refused = _admitted(request)
    if refused is not None:
        return refused
    reference = normalise(request.match_info["reference"])
    found = _found(request, reference) if reference else None
    if reference is None or found is None:
        return _unknown(request)
    t = _t()
    steps = [{"when": _when(m.at), "label": t.get(f"step.{m.kind}", m.kind)
              + (f" ({t[f'reason.{m.reason}']})" if m.reason and f"reason.{m.reason}" in t else "")}
             for m in found.history]
    # A report grouped into a case answers with the case's state (open311_cases): say so.
    case_text = t["case_text"].format(count=found.case_reports) if found.case_reports > 1 else ""
    return render(request, "track.html", reference=reference, category=category_label(found.category),
                  municipality=request.app[NAMES_KEY].get(found.municipality, found.municipality),
                  state=t.get(f"state.{found.status.value}", found.status.value), steps=steps,
                  case_text=case_text)


def _claim(request: web.Request) -> tuple[str, UUID] | web.Response:
    """The reference and incident id of a valid unsubscribe link, or the refusal."""
    t = _t()
    reference = normalise(request.match_info["reference"])
    found = _found(request, reference) if reference else None
    incident_id = UUID(found.id) if found is not None else None
    if reference is None or incident_id is None \
            or not request.app[LINKS_KEY].verify(request.match_info["token"], incident_id):
        return render(request, "message.html", status=403, title=t["unsubscribe_title"],
                      text=t["unsubscribe_bad"], kind="alert", back=None)
    return reference, incident_id


async def unsubscribe_page(request: web.Request) -> web.Response:
    refused = _admitted(request)
    if refused is not None:
        return refused
    claim = _claim(request)
    if isinstance(claim, web.Response):
        return claim
    reference, _ = claim
    return render(request, "unsubscribe.html", text=_t()["unsubscribe_text"].format(reference=reference),
                  back=str(request.app.router["tracking-page"].url_for(reference=reference)))


async def unsubscribe(request: web.Request) -> web.Response:
    refused = _admitted(request)
    if refused is not None:
        return refused
    claim = _claim(request)
    if isinstance(claim, web.Response):
        return claim
    reference, incident_id = claim
    t = _t()
    back = str(request.app.router["tracking-page"].url_for(reference=reference))
    if not await request.app[WRITER_KEY].withdraw_async(incident_id):
        return render(request, "message.html", status=503, headers={"Retry-After": "5"},
                      title=t["unsubscribe_title"], text=t["unsubscribe_failed"], kind="alert", back=back)
    log.info("incident=%s: consent withdrawn by its unsubscribe link", incident_id)
    return render(request, "message.html", title=t["unsubscribed_title"],
                  text=t["unsubscribed_text"].format(reference=reference), kind="sent", back=back)
