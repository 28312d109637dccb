"""The desk's pages, mounted under ``/agence/`` on the HTTP intake.

    GET  /agence/                       the inbox (login first); filters in the URL
    GET  /agence/boite                  the inbox's rows only (the page polls it, see desk.js)
    GET  /agence/connexion              login;  POST it to log in (a new session each time)
    POST /agence/deconnexion            logout
    GET  /agence/dispatches/{id}        one dispatch: the report, deadlines, history, actions
    POST /agence/actions                an action on one dispatch or a selection (JSON answer
                                        for the page's script with ``Accept: application/json``)
    GET  /agence/export.csv             the body's dispatches as CSV (role chef)
    GET  /agence/zone.geojson           the body's service areas and the territory's towns

Every request authorizes from the session's identity alone (``veille.web.identity.recall``),
however the person logged in, and reads the book through ``DeskBook.visible`` only: a
dispatch of another body is answered exactly like an unknown one (404).
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp_session import Session, get_session, new_session
from shapely.geometry import mapping

from veille.photos.links import PhotoLinks
from veille.producers import metrics
from veille.producers.desk.accounts import AccountStore
from veille.producers.desk.actions import Sent, status_update
from veille.producers.desk.book import DeskBook, Entry, parse_filters
from veille.producers.desk.forms import (
    ACTIONS,
    ActionForm,
    LoginForm,
    SplitForm,
    action_label,
    form_meta,
    text,
)
from veille.producers.desk.pages import render
from veille.producers.desk.present import detail, linked_report, present, reference
from veille.producers.gate import Quota, TokenBuckets, deliver
from veille.producers.response.forms import clean
from veille.producers.sdk import Rejected
from veille.schemas.enums import IncidentCategory, IncidentStatus, Severity
from veille.schemas.models import StatusUpdate
from veille.schemas.registry import RegistryUnavailable
from veille.territory import Territory
from veille.web.identity import Identity, Role, forget, recall, remember

log = logging.getLogger("veille.producers.desk")

MAIN_APP_KEY = web.AppKey("desk_main_app", web.Application)
BOOK_KEY = web.AppKey("desk_book", DeskBook)
ACCOUNTS_KEY = web.AppKey("desk_accounts", AccountStore)
TERRITORY_KEY = web.AppKey("desk_territory", Territory)
CSRF_KEY = web.AppKey("desk_csrf_secret", bytes)
HOURS_KEY = web.AppKey("desk_session_hours", float)
LOGIN_BUCKETS_KEY = web.AppKey("desk_login_buckets", TokenBuckets)
SENT_KEY = web.AppKey("desk_sent", Sent)
SSO_KEY = web.AppKey("desk_sso_url", str)
PHOTO_LINKS_KEY = web.AppKey("desk_photo_links", PhotoLinks)
# Rows the inbox shows (the most urgent first); past that the page says how many more there
# are and the filters narrow them: presenting 200 rows takes ~20 ms, 17,000 over a second.
MAX_ROWS = 200
# Ten tries, then one every six seconds, per client address (as the relays' login).
LOGIN_QUOTA = Quota(1 / 6, 10)


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _url(request: web.Request, name: str, **parts: str) -> str:
    return str(request.app.router[name].url_for(**parts))


async def current(request: web.Request) -> tuple[Identity | None, Session]:
    """The session's identity while it is still good: a rotated or revoked account, or an
    identity provider's session past its end, is logged out here."""
    session = await get_session(request)
    identity = recall(session)
    if identity is None:
        return None, session
    expired = identity.expires_at is not None and identity.expires_at < datetime.now(UTC).timestamp()
    if expired or not request.app[ACCOUNTS_KEY].still_valid(identity):
        forget(session)
        session.invalidate()
        return None, session
    return identity, session


def _unauthorised(request: web.Request) -> web.Response:
    if _wants_json(request):
        return web.json_response({"errors": {"session": text("session_expired")}}, status=401)
    raise web.HTTPSeeOther(_url(request, "desk-login"))


def _meta(request: web.Request, session: Session) -> dict[str, Any]:
    return form_meta(session, request.app[CSRF_KEY], request.app[HOURS_KEY])


def _agency_name(request: web.Request, identity: Identity) -> str:
    agency = request.app[TERRITORY_KEY].agencies.get(identity.agency_id)
    return agency.name if agency else identity.agency_id


# --------------------------------------------------------------------------- login


async def login_page(request: web.Request) -> web.Response:
    identity, session = await current(request)
    if identity is not None:
        raise web.HTTPSeeOther(_url(request, "desk-inbox"))
    return render(request, "login.html", form=LoginForm(meta=_meta(request, session)),
                  sso=request.app.get(SSO_KEY))


async def login(request: web.Request) -> web.Response:
    session = await get_session(request)
    form = LoginForm(await request.post(), meta=_meta(request, session))
    sso = request.app.get(SSO_KEY)
    if not form.validate():
        return render(request, "login.html", status=400, form=form, sso=sso)
    if request.app[LOGIN_BUCKETS_KEY].take(f"login:{request.remote}", LOGIN_QUOTA) > 0:
        metrics.DESK.labels("login_throttled").inc()
        return render(request, "login.html", status=429, form=form, sso=sso, failure=text("login_throttled"))
    # scrypt takes ~0.1 s of CPU and 32 MiB: off the event loop, which serves every publisher.
    account = await asyncio.get_running_loop().run_in_executor(
        None, request.app[ACCOUNTS_KEY].authenticate, form.login.data or "", form.password.data or "")
    if account is None:
        metrics.DESK.labels("login_failed").inc()
        form.password.data = ""
        return render(request, "login.html", status=403, form=form, sso=sso, failure=text("login_failed"))
    fresh = await new_session(request)  # a new session (and CSRF secret): no fixation
    remember(fresh, account.identity())
    metrics.DESK.labels("login").inc()
    log.info("desk: %s of %s logged in", account.id, account.agency_id)
    raise web.HTTPSeeOther(_url(request, "desk-inbox"))


async def logout(request: web.Request) -> web.Response:
    session = await get_session(request)
    form = LoginForm(await request.post(), meta=_meta(request, session))
    form.validate()
    if not form.csrf_token.errors:
        session.invalidate()
    raise web.HTTPSeeOther(_url(request, "desk-login"))


# --------------------------------------------------------------------------- reading


def _rows(request: web.Request, identity: Identity,
          limit: int | None = MAX_ROWS) -> tuple[list[dict[str, Any]], Any, int]:
    """The body's dispatches under the URL's filters, presented (at most ``limit``), and how many."""
    book = request.app[BOOK_KEY]
    filters = parse_filters(request.query, {c.value for c in IncidentCategory})
    now = datetime.now(UTC)
    territory = request.app[TERRITORY_KEY]
    entries = book.visible(identity.agency_id, filters=filters)
    rows = [present(e, territory, book.others(e), now) for e in entries[:limit]]
    return rows, filters, len(entries)


def _choices(request: web.Request) -> dict[str, Any]:
    from veille.deliver.view import category_label, severity_label

    return {"categories": [(c.value, category_label(c.value)) for c in IncidentCategory],
            "severities": [(s.value, severity_label(s.value)) for s in Severity],
            "actions": [(s.value, action_label(s.value)) for s in ACTIONS]}


async def inbox(request: web.Request) -> web.Response:
    identity, session = await current(request)
    if identity is None:
        return _unauthorised(request)
    rows, filters, total = _rows(request, identity)
    form = ActionForm(meta=_meta(request, session))
    return render(request, "inbox.html", identity=identity, agency=_agency_name(request, identity),
                  rows=rows, total=total, filters=filters, form=form, query=request.query_string,
                  active="inbox", chef=identity.role == Role.chef, **_choices(request))


async def inbox_rows(request: web.Request) -> web.Response:
    identity, _ = await current(request)
    if identity is None:
        return web.json_response({"errors": {"session": text("session_expired")}}, status=401)
    rows, _filters, total = _rows(request, identity)
    return render(request, "rows.html", rows=rows, total=total)


async def dispatch_page(request: web.Request) -> web.Response:
    identity, session = await current(request)
    if identity is None:
        return _unauthorised(request)
    book = request.app[BOOK_KEY]
    entry = book.one(identity.agency_id, request.match_info["id"])
    if entry is None:
        return render(request, "not_found.html", status=404, identity=identity,
                      agency=_agency_name(request, identity))
    territory = request.app[TERRITORY_KEY]
    row = present(entry, territory, book.others(entry), datetime.now(UTC))
    # A case's dispatch lists its reports, each of which may be split out (producers/desk/cases.py).
    case = [entry, *book.linked(entry)] if entry.role == "opened" else []
    reports = [linked_report(e, territory) for e in case]
    split_from = book.one(identity.agency_id, entry.update_of) if entry.split and entry.update_of else None
    return render(request, "dispatch.html", identity=identity, agency=_agency_name(request, identity),
                  row=row, detail=detail(entry), photos=_photo_urls(request, entry),
                  form=ActionForm(meta=_meta(request, session)),
                  done=action_label(request.query.get("fait", "")), chef=identity.role == Role.chef,
                  reports=reports,
                  split_form=SplitForm(meta=_meta(request, session)) if len(reports) > 1 else None,
                  split_done=request.query.get("fait") == "scinde",
                  split_from=None if split_from is None else split_from.id,
                  split_from_ref=None if split_from is None else reference(split_from.id),
                  **_choices(request))


def _photo_urls(request: web.Request, entry: Entry) -> list[str]:
    """The signed, expiring URLs of the incident's photos for this body's dispatch, relative:
    the intake that serves the desk serves ``/photos/`` too."""
    links = request.app.get(PHOTO_LINKS_KEY)
    v = entry.view
    if links is None or not v.photos:
        return []
    return [link.url for link in links.for_dispatch("", v.photos, v.dispatch.id, v.dispatch.routed_at)]


# --------------------------------------------------------------------------- acting


async def _publish(request: web.Request, data: dict[str, Any]) -> str:
    """"" once the broker acknowledged the StatusUpdate, else why not."""
    try:
        _, report = await deliver(request.app[MAIN_APP_KEY], data, "StatusUpdate")
    except Rejected:
        return "rejected"
    except RegistryUnavailable:
        return "broker"
    return "" if report is not None and report.ok else "broker"


async def act(request: web.Request) -> web.Response:
    identity, session = await current(request)
    if identity is None:
        return _unauthorised(request)
    form = ActionForm(await request.post(), meta=_meta(request, session))
    if not form.validate():
        errors = form.errors_by_field()
        metrics.DESK.labels("csrf" if "csrf_token" in errors else "invalid").inc()
        return _acted(request, 400 if "csrf_token" in errors else 422, errors=errors)
    ids = form.dispatch_ids()
    book, sent = request.app[BOOK_KEY], request.app[SENT_KEY]
    if not book.caught_up.is_set():  # just started: "not found" may only mean "not read yet"
        metrics.DESK.labels("not_ready").inc()
        return _acted(request, 503, errors={"form": text("error.broker")})
    entries = book.visible(identity.agency_id, ids)
    if len(entries) != len(ids):  # another body's dispatch, or none: nothing is published
        metrics.DESK.labels("not_theirs").inc()
        log.warning("desk: %s of %s named dispatches not theirs", identity.subject, identity.agency_id)
        return _acted(request, 404, errors={"dispatch": text("error.not_found")})
    action_id, status = str(form.action_id.data), IncidentStatus(form.status.data)
    at = sent.first_seen(action_id)
    done, failed = [], []
    for entry in entries:
        if sent.done(action_id, entry.id):
            metrics.DESK.labels("replayed").inc()
            done.append(entry.id)  # a re-send of an acknowledged action: published once
            continue
        data = status_update(identity, entry, action_id=action_id, status=status, at=at,
                             reason=form.reason.data or None, corrected=form.corrected(),
                             note=clean(form.note.data) or None)
        why = await _publish(request, data)
        metrics.DESK.labels(why or "published").inc()
        if why:
            failed.append((entry.id, why))
            continue
        sent.mark(action_id, entry.id)
        book.acted(StatusUpdate.model_validate(data))
        done.append(entry.id)
        log.info("desk: dispatch %s agency %s status %s published", entry.id, identity.agency_id,
                 status.value)
    if failed:
        reason = failed[0][1]
        return _acted(request, 503 if reason == "broker" else 422, done=done,
                      errors={"form": text(f"error.{reason}")})
    return _acted(request, 200, done=done, status=status)


def _acted(request: web.Request, code: int, *, done: list[str] | None = None,
           errors: dict[str, str] | None = None, status: IncidentStatus | None = None) -> web.Response:
    label = action_label(status.value) if status else ""
    if _wants_json(request):
        return web.json_response({"done": done or [], "errors": errors or {},
                                  "message": text("acted", action=label, count=len(done or []))
                                  if status else ""}, status=code)
    if code != 200 or not done:
        return render(request, "refused.html", status=code, errors=errors or {})
    if len(done) == 1:  # back to the dispatch, which confirms it
        page = _url(request, "desk-dispatch", id=done[0])
        raise web.HTTPSeeOther(f"{page}?fait={status.value if status else ''}")
    raise web.HTTPSeeOther(_url(request, "desk-inbox"))


# --------------------------------------------------------------------------- export, map


CSV_COLUMNS = ("reference", "id", "category", "severity", "town", "address", "lat", "lon", "reported_at",
               "status", "status_at", "delivery", "others")


async def export_csv(request: web.Request) -> web.Response:
    identity, _ = await current(request)
    if identity is None:
        return _unauthorised(request)
    if identity.role != Role.chef:
        raise web.HTTPForbidden(text="réservé aux chefs de service")
    rows, _filters, _total = _rows(request, identity, limit=None)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([text(f"csv.{c}") for c in CSV_COLUMNS])
    for row in rows:
        values = {**row, "category": row["category_label"], "severity": row["severity_label"],
                  "status": row["status_label"], "others": " ; ".join(row["others"])}
        writer.writerow(["" if values[c] is None else _safe(str(values[c])) for c in CSV_COLUMNS])
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8", headers={
        "Content-Disposition": f'attachment; filename="signalements-{identity.agency_id}-{stamp}.csv"',
        "Cache-Control": "no-store"})


def _safe(value: str) -> str:
    """No spreadsheet formula out of a cell (CSV injection): a leading = + - @ is quoted."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


async def zone_geojson(request: web.Request) -> web.Response:
    identity, _ = await current(request)
    if identity is None:
        return _unauthorised(request)
    territory = request.app[TERRITORY_KEY]
    features = [{"type": "Feature", "geometry": mapping(m.geometry),
                 "properties": {"kind": "town", "name": m.name}} for m in territory.municipalities.values()]
    features += [{"type": "Feature", "geometry": mapping(a.geometry),
                  "properties": {"kind": "area", "service": a.service.value}}
                 for a in territory.service_areas
                 if a.agency_id == identity.agency_id and not a.geometry.is_empty]
    return web.json_response({"type": "FeatureCollection", "features": features})
