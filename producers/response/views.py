"""The response page and the answer, mounted under ``/reponse/`` on the HTTP intake.

    GET  /reponse/<dispatch id>/<token>                the dispatch's summary and the answers
    POST /reponse/<dispatch id>/<token>                answer: publish the StatusUpdate, then
                                                       303 to the page, which confirms it
    GET  /reponse/<dispatch id>[/]                     a link cut short: say so (404)

Every request is counted against two token buckets, one per client address and one per
dispatch of the link (429 with ``Retry-After`` past either). The link is checked before
anything else: forged or cut short 403, expired 410, for another dispatch 403 (each with the
French message of ``veille.deliver.links``). An answer also needs the form's CSRF token (400
without it), spends the link for that status (409 the second time, for any link of that
dispatch) and is published as a StatusUpdate through the gate's ``deliver``; a broker that
does not acknowledge gives the status back (503: answer again). Logs carry the dispatch id,
the agency, the status and the reason of a refusal: never the token nor the free text.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from aiohttp import web
from aiohttp_session import get_session

from veille.deliver.links import RESPONSE_STATUSES, LinkClaim, LinkRefused, ResponseLinks, UsedLinks
from veille.deliver.view import category_label, severity_label
from veille.producers import metrics
from veille.producers.gate import Quota, TokenBuckets, deliver
from veille.producers.response.forms import AnswerForm, form_meta, note, text
from veille.producers.response.pages import render
from veille.producers.sdk import Rejected
from veille.schemas.models import IncidentStatus
from veille.schemas.registry import RegistryUnavailable
from veille.territory import Territory

log = logging.getLogger("veille.producers.response")
T = TypeVar("T")

LOCAL_TZ = ZoneInfo("Europe/Paris")
# Per client address: 30 requests, then one every 5 s (an office behind one address answering
# many dispatches passes; a script trying tokens does not). Per dispatch: 20, then one a minute
# (opening the page and answering four times takes 9).
ADDRESS_QUOTA = Quota(1 / 5, 30)
LINK_QUOTA = Quota(1 / 60, 20)
# HTTP status of each refusal of a link.
REFUSED_STATUS = {"forged": 403, "expired": 410, "other_dispatch": 403, "used": 409, "bad_status": 422,
                  "no_incident": 410}


@dataclass(frozen=True)
class Names:
    """Names of the territory's municipalities and agencies (the page shows codes without)."""

    municipalities: dict[str, str] = field(default_factory=dict)
    agencies: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, territory: Territory | None) -> Names:
        if territory is None:
            return cls()
        return cls({code: m.name for code, m in territory.municipalities.items()},
                   {code: a.name for code, a in territory.agencies.items()})


MAIN_APP_KEY = web.AppKey("response_main_app", web.Application)
LINKS_KEY = web.AppKey("response_links", ResponseLinks)
USED_KEY = web.AppKey("response_used", UsedLinks)
NAMES_KEY = web.AppKey("response_names", Names)
BUCKETS_KEY = web.AppKey("response_buckets", TokenBuckets)
QUOTAS_KEY = web.AppKey("response_quotas", tuple)
CSRF_KEY = web.AppKey("response_csrf_secret", bytes)
# (request, agency id, dispatch id) -> the desk's page of that dispatch for its logged-in body, or None
Landing = Callable[[web.Request, str, str], str | None]
LANDING_KEY: web.AppKey[Landing] = web.AppKey("response_landing")


def csrf_key(session_key: bytes) -> bytes:
    """The CSRF HMAC key of this page, derived from the session key (another use, another key)."""
    return hmac.new(session_key, b"veille-response-csrf", hashlib.sha256).digest()


def reference(dispatch_id: uuid.UUID) -> str:
    """The dispatch's reference as the e-mail prints it (its id's first 8 hex digits)."""
    head = dispatch_id.hex[:8].upper()
    return f"{head[:4]}-{head[4:]}"


def french_time(value: datetime) -> str:
    return value.astimezone(LOCAL_TZ).strftime("%d/%m/%Y à %H:%M")


async def _off_loop(func: Callable[..., T], *args: Any) -> T:
    """The used-set's file lock may wait on another process: never on the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, func, *args)


def _dispatch_label(request: web.Request) -> str:
    """The dispatch id of the path for the logs, only when it is one (no arbitrary text)."""
    try:
        return str(uuid.UUID(request.match_info.get("dispatch", "")))
    except ValueError:
        return "-"


def _count(outcome: str) -> None:
    metrics.RESPONSE_PAGE.labels(outcome).inc()


def _throttled(request: web.Request) -> web.Response | None:
    buckets, (per_address, per_link) = request.app[BUCKETS_KEY], request.app[QUOTAS_KEY]
    wait = max(buckets.take(f"addr:{request.remote}", per_address),
               buckets.take(f"link:{request.match_info.get('dispatch', '')[:64]}", per_link))
    if wait <= 0:
        return None
    _count("throttled")
    log.info("response page: throttled, dispatch %s", _dispatch_label(request))
    return render(request, "refused.html", status=429, title=text("throttled_title"),
                  message=text("throttled"), headers={"Retry-After": str(max(1, round(wait)))})


def _refused(request: web.Request, reason: str, message: str | None = None) -> web.Response:
    _count(reason)
    log.info("response page: refused (%s), dispatch %s", reason, _dispatch_label(request))
    return render(request, "refused.html", status=REFUSED_STATUS.get(reason, 403),
                  title=text("refused_title"), message=message or str(LinkRefused(reason)))


def _verify(request: web.Request) -> LinkClaim | web.Response:
    try:
        claim = request.app[LINKS_KEY].verify(request.match_info["token"], request.match_info["dispatch"])
    except LinkRefused as exc:
        return _refused(request, exc.reason)
    if claim.incident_id is None:  # a link made before the incident id was signed into it
        return _refused(request, "no_incident", text("refused.no_incident"))
    return claim


def _summary(request: web.Request, claim: LinkClaim) -> dict[str, str]:
    names, s = request.app[NAMES_KEY], claim.summary
    unknown = text("unknown")
    what = unknown
    if s is not None and s.category:
        what = category_label(s.category) + (f" ({severity_label(s.severity).lower()})" if s.severity else "")
    where = unknown
    if s is not None and s.municipality:
        name = names.municipalities.get(s.municipality)
        where = f"{name} ({s.municipality})" if name else s.municipality
    return {"what": what, "where": where,
            "when": french_time(s.reported_at) if s is not None and s.reported_at else unknown,
            "reference": reference(claim.dispatch_id),
            "agency": names.agencies.get(claim.agency_id, claim.agency_id)}


async def _page(request: web.Request, claim: LinkClaim, form: AnswerForm, *, status: int = 200,
                errors: dict[str, str] | None = None, sent: IncidentStatus | None = None) -> web.Response:
    answered = await _off_loop(request.app[USED_KEY].answered, claim.dispatch_id)
    until = french_time(claim.issued_at + request.app[LINKS_KEY].max_age)
    return render(request, "answer.html", status=status, form=form, errors=errors or {},
                  summary=_summary(request, claim), answered={s.value for s in answered},
                  statuses=[(s.value, label) for s, label in RESPONSE_STATUSES.items()],
                  rejected=IncidentStatus.rejected.value, until=until,
                  sent=RESPONSE_STATUSES[sent] if sent is not None and sent in answered else None)


def _admitted(request: web.Request) -> LinkClaim | web.Response:
    """The link's claim, or the answer refusing it: over the rate limit first, then the link."""
    throttled = _throttled(request)
    return throttled if throttled is not None else _verify(request)


async def answer_page(request: web.Request) -> web.Response:
    claim = _admitted(request)
    if isinstance(claim, web.Response):
        return claim
    landing = request.app.get(LANDING_KEY)
    desk_page = landing(request, claim.agency_id, str(claim.dispatch_id)) if landing is not None else None
    if desk_page is not None:  # someone of that body logged in on the desk: its page, not this one
        _count("desk")
        raise web.HTTPSeeOther(desk_page)
    session = await get_session(request)
    form = AnswerForm(meta=form_meta(session, request.app[CSRF_KEY]))
    sent = request.query.get("transmis", "")
    done = IncidentStatus(sent) if sent in {s.value for s in RESPONSE_STATUSES} else None
    return await _page(request, claim, form, sent=done)


async def answer(request: web.Request) -> web.Response:
    claim = _admitted(request)
    if isinstance(claim, web.Response):
        return claim
    session = await get_session(request)
    form = AnswerForm(await request.post(), meta=form_meta(session, request.app[CSRF_KEY]))
    if not form.validate():
        errors = form.errors_by_field()
        _count("csrf" if "csrf_token" in errors else "invalid")
        return await _page(request, claim, form, status=400 if "csrf_token" in errors else 422, errors=errors)
    status, links, used = form.answer(), request.app[LINKS_KEY], request.app[USED_KEY]
    try:  # verified again and spent for this status, under the used-set's lock
        await _off_loop(links.redeem, request.match_info["token"], claim.dispatch_id, status, used)
    except LinkRefused as exc:
        return _refused(request, exc.reason)
    text_note = note(status, form.reason.data, form.detail.data)
    published, reason = await _publish(request, claim, status, text_note)
    if not published:
        await _off_loop(used.release, claim.dispatch_id, status)  # not counted: answer again
        _count(reason)
        log.warning("response page: dispatch %s agency %s status %s not published (%s)",
                    claim.dispatch_id, claim.agency_id, status.value, reason)
        return await _page(request, claim, form, status=503 if reason == "broker" else 422,
                           errors={"form": text(f"error.{reason}")})
    _count("published")
    log.info("response page: dispatch %s agency %s status %s published", claim.dispatch_id,
             claim.agency_id, status.value)
    location = request.app.router["response-page"].url_for(
        dispatch=request.match_info["dispatch"], token=request.match_info["token"])
    raise web.HTTPSeeOther(str(location.with_query(transmis=status.value)))


async def _publish(request: web.Request, claim: LinkClaim, status: IncidentStatus,
                   note_text: str | None) -> tuple[bool, str]:
    """(True, "") once the broker acknowledged the StatusUpdate, else (False, why)."""
    data = {"id": str(uuid.uuid4()), "incident_id": str(claim.incident_id), "agency_id": claim.agency_id,
            "dispatch_id": str(claim.dispatch_id), "status": status.value,
            "at": datetime.now(UTC).isoformat(), "note": note_text}
    try:
        _, report = await deliver(request.app[MAIN_APP_KEY], data, "StatusUpdate")
    except Rejected:  # e.g. an agency no longer in the territory
        return False, "rejected"
    except RegistryUnavailable:
        return False, "broker"
    if report is None or not report.ok:
        return False, "broker"
    return True, ""


async def truncated(request: web.Request) -> web.Response:
    """``/reponse/<id>`` without its token: a link cut by the mail client."""
    throttled = _throttled(request)
    if throttled is not None:
        return throttled
    response = _refused(request, "forged")
    response.set_status(404)
    return response
