"""The relays' pages and the report endpoint, mounted under ``/relais/`` on the HTTP intake.

    GET  /relais/                    the report form (login first)
    GET  /relais/connexion           login;  POST it to log in (a new session each time)
    POST /relais/deconnexion         logout
    POST /relais/signalements        send a report: JSON answer for the page's script
                                     (``Accept: application/json``), an HTML page otherwise
    GET  /relais/signalements/{id}   status of one report of the relay's towns (JSON)
    GET  /relais/suivi?reference=…   the same as a page (full id, or the 8-character reference)
    GET  /relais/territoire.geojson  the territory's towns for the map (no tiles: works offline)

A report is published as an Incident exactly as ``POST /v1/incidents`` publishes one
(``deliver``: acks=all, answered once the broker acknowledged), on the channel of the
account's kind, for one of the account's towns only (403 ``municipality_mismatch``). Its id
comes from the page, so a report re-sent by the offline queue keeps it, and the gate's
``IntakeState.fill`` gives the re-send the same ``reported_at``: the bytes are identical and
the router drops the copy. Nothing is published unless every field is valid.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp_session import Session, get_session, new_session
from shapely.geometry import mapping

from veille.photos.intake import PHOTOS_KEY
from veille.photos.sanitise import PhotoRefused
from veille.producers import metrics, tracking
from veille.producers.gate import STATE_KEY, Quota, TokenBuckets, deliver
from veille.producers.open311_catalog import CLOSED
from veille.producers.open311_requests import RequestBook, ServiceRequest
from veille.producers.photo_upload import FormTooLarge, check_references, read_form
from veille.producers.relay.accounts import AccountStore, RelayAccount
from veille.producers.relay.forms import (
    LOCAL_TZ,
    LoginForm,
    ReportForm,
    category_choices,
    category_keywords,
    form_meta,
    map_rejected,
    text,
)
from veille.producers.relay.pages import render
from veille.producers.sdk import Rejected
from veille.producers.tracking.consent import ConsentError, consent_of
from veille.schemas.registry import RegistryUnavailable
from veille.territory import Territory

MAIN_APP_KEY = web.AppKey("relay_main_app", web.Application)
ACCOUNTS_KEY = web.AppKey("relay_accounts", AccountStore)
TERRITORY_KEY = web.AppKey("relay_territory", Territory)
CSRF_KEY = web.AppKey("relay_csrf_secret", bytes)
HOURS_KEY = web.AppKey("relay_session_hours", float)
LOGIN_BUCKETS_KEY = web.AppKey("relay_login_buckets", TokenBuckets)
BOOK_LOOKUP_KEY = web.AppKey("relay_book_key", web.AppKey)
# Ten tries, then one every six seconds, per client address: a password cannot be guessed online.
LOGIN_QUOTA = Quota(1 / 6, 10)
LOOKUP_WINDOW = timedelta(days=90)


def reference(report_id: str) -> str:
    """What the relay reads to the resident: the id's first 8 hex digits, e.g. 4F0C-91A2."""
    short = report_id.replace("-", "")[:8].upper()
    return f"{short[:4]}-{short[4:]}"


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _towns(request: web.Request, account: RelayAccount) -> dict[str, str]:
    territory = request.app[TERRITORY_KEY]
    return {m: territory.municipalities[m].name if m in territory.municipalities else m
            for m in account.municipalities}


async def current_account(request: web.Request) -> tuple[RelayAccount | None, Session]:
    session = await get_session(request)
    account = request.app[ACCOUNTS_KEY].get(str(session.get("account", "")))
    if account is None or session.get("generation") != account.generation:
        if "account" in session:  # revoked or rotated since: that session is over
            session.invalidate()
        return None, session
    return account, session


def _login_url(request: web.Request) -> str:
    return str(request.app.router["relay-login"].url_for())


def _unauthorised(request: web.Request) -> web.Response:
    if _wants_json(request):
        return web.json_response({"errors": {"session": text("session_expired")}}, status=401)
    raise web.HTTPSeeOther(_login_url(request))


# --------------------------------------------------------------------------- login


async def login_page(request: web.Request) -> web.Response:
    account, session = await current_account(request)
    if account is not None:  # already logged in (a bookmark of the login page)
        raise web.HTTPSeeOther(str(request.app.router["relay-form"].url_for()))
    form = LoginForm(meta=form_meta(session, request.app[CSRF_KEY], request.app[HOURS_KEY]))
    return render(request, "login.html", form=form)


async def login(request: web.Request) -> web.Response:
    session = await get_session(request)
    form = LoginForm(await request.post(), meta=form_meta(session, request.app[CSRF_KEY],
                                                          request.app[HOURS_KEY]))
    if not form.validate():
        return render(request, "login.html", status=400, form=form)
    if request.app[LOGIN_BUCKETS_KEY].take(f"login:{request.remote}", LOGIN_QUOTA) > 0:
        return render(request, "login.html", status=429, form=form, failure=text("login_throttled"))
    # scrypt takes ~0.1 s of CPU and 32 MiB: off the event loop, which serves every publisher.
    account = await asyncio.get_running_loop().run_in_executor(
        None, request.app[ACCOUNTS_KEY].authenticate, form.login.data or "", form.password.data or "")
    if account is None:
        form.password.data = ""
        return render(request, "login.html", status=403, form=form, failure=text("login_failed"))
    fresh = await new_session(request)  # a new session (and CSRF secret): no fixation
    fresh["account"], fresh["generation"] = account.id, account.generation
    raise web.HTTPSeeOther(str(request.app.router["relay-form"].url_for()))


async def logout(request: web.Request) -> web.Response:
    session = await get_session(request)
    form = LoginForm(await request.post(), meta=form_meta(session, request.app[CSRF_KEY],
                                                          request.app[HOURS_KEY]))
    form.validate()
    if not form.csrf_token.errors:
        session.invalidate()
    raise web.HTTPSeeOther(_login_url(request))


# --------------------------------------------------------------------------- the form


def _new_form(request: web.Request, session: Session, account: RelayAccount, data: Any = None) -> ReportForm:
    form = ReportForm(data, meta=form_meta(session, request.app[CSRF_KEY], request.app[HOURS_KEY]))
    form.setup(_towns(request, account))
    if data is None:
        form.report_id.data = str(uuid.uuid4())
        form.occurred_at.data = datetime.now(LOCAL_TZ).replace(tzinfo=None, second=0, microsecond=0)
        form.municipality.data = account.municipalities[0]
    return form


def _page(request: web.Request, account: RelayAccount, form: ReportForm, *, status: int = 200,
          errors: dict[str, str] | None = None, sent: str | None = None,
          tracking: dict[str, str] | None = None) -> web.Response:
    return render(request, "form.html", status=status, form=form, account=account, errors=errors or {},
                  active="form", tracking=tracking,
                  sent=sent, towns=_towns(request, account), keywords=category_keywords(),
                  groups=category_choices(), kind=text(f"kind.{account.kind}"), timezone=LOCAL_TZ.key,
                  photo_max_bytes=_photo_max_bytes(request))


def _photo_max_bytes(request: web.Request) -> int:
    """The photo field's bound; 0 (no field) when the intake keeps no photos."""
    photos = request.app[MAIN_APP_KEY].get(PHOTOS_KEY)
    return photos.settings.max_bytes if photos is not None else 0


async def form_page(request: web.Request) -> web.Response:
    account, session = await current_account(request)
    if account is None:
        return _unauthorised(request)
    return _page(request, account, _new_form(request, session, account))


def _place_errors(territory: Territory, account: RelayAccount,
                  form: ReportForm) -> tuple[int, dict[str, str]]:
    """Where the report is must be one of the account's towns: 403 otherwise, as the intake."""
    if form.municipality.data not in account.municipalities:
        return 403, {"municipality": text("error.municipality")}
    point = form.point()
    if point is None:
        return 200, {}
    found = territory.locate(point[1], point[0])
    if not found:
        return 422, {"place": text("place_outside")}
    if form.municipality.data in found:
        return 200, {}
    name = territory.municipalities[found[0]].name
    if not set(found) & set(account.municipalities):
        return 403, {"place": text("place_other_town", town=name)}
    return 422, {"place": text("error.place_other_municipality", town=name)}


def _answer(request: web.Request, account: RelayAccount, form: ReportForm, status: int,
            errors: dict[str, str], **extra: Any) -> web.Response:
    if _wants_json(request):
        return web.json_response({"errors": errors, **extra}, status=status)
    return _page(request, account, form, status=status, errors=errors)


async def send_report(request: web.Request) -> web.Response:
    account, session = await current_account(request)
    if account is None:
        return _unauthorised(request)
    main = request.app[MAIN_APP_KEY]
    photos = main.get(PHOTOS_KEY)
    try:
        formdata, photo_bytes = await read_form(request, photos)
    except PhotoRefused as exc:
        return _answer(request, account, _new_form(request, session, account),
                       413 if exc.code == "too_large" else 422, {"photo": str(exc)})
    except FormTooLarge:
        return _answer(request, account, _new_form(request, session, account), 413,
                       {"form": text("error.rejected")})
    form = _new_form(request, session, account, formdata)
    if not form.validate():
        errors = form.errors_by_field()
        return _answer(request, account, form, 400 if "csrf_token" in errors else 422, errors)
    status, errors = _place_errors(request.app[TERRITORY_KEY], account, form)
    if errors:
        if status == 403:
            metrics.REJECTED.labels("Incident", "municipality_mismatch").inc()
        return _answer(request, account, form, status, errors,
                       **({"code": "municipality_mismatch"} if status == 403 else {}))
    data = form.incident(channel=account.channel.value)
    if photo_bytes is not None and photos is not None:
        try:
            kept = await photos.keep(photo_bytes)  # stripped, re-encoded, stored by digest
        except PhotoRefused as exc:
            return _answer(request, account, form, 422, {"photo": str(exc)})
        data["photos"] = [{"sha256": kept.sha256}]
    main[STATE_KEY].fill("Incident", data, account.channel.value)  # same reported_at for a re-send
    refused = await check_references(main, data)  # the photo's reference, before publishing
    if refused is not None:
        return _answer(request, account, form, 422, {"photo": refused.reason})
    tracking_info, refused = await _hearing_back(request, account, form, data)
    if refused is not None:
        return refused
    try:
        queued, report = await deliver(main, data, "Incident")
    except Rejected as exc:
        return _answer(request, account, form, 422, map_rejected(exc.errors))
    except RegistryUnavailable:
        report = None
    if report is None or not report.ok:
        # It may still arrive: the page keeps the report and re-sends the same id later.
        return _answer(request, account, form, 503, {"form": text("error.broker")}, id=data["id"])
    book = _book(request)
    if book is not None:  # read-your-writes before the router's record comes back
        book.submitted(queued.event_id, data["category"], data["municipality"],
                       datetime.fromisoformat(data["reported_at"]), data["location"])
    ref = reference(queued.event_id)
    if _wants_json(request):
        extra = {f"tracking_{k}": v for k, v in (tracking_info or {}).items()}
        return web.json_response({"id": queued.event_id, "reference": ref,
                                  "status": text("status.received"), **extra}, status=201)
    return _page(request, account, _new_form(request, session, account), status=201, sent=ref,
                 tracking=tracking_info)


async def _hearing_back(request: web.Request, account: RelayAccount, form: ReportForm,
                        data: dict[str, Any]) -> tuple[dict[str, str] | None, web.Response | None]:
    """The tracking reference and page; the consent (resident's or relay's) written before the
    incident is published (producers/tracking). (None, None) on an intake without them."""
    main = request.app[MAIN_APP_KEY]
    if tracking.NOTIFY_KEY not in main:
        return None, None
    notify = main[tracking.NOTIFY_KEY]
    tracking_ref = tracking.reference_of(notify, data["id"])
    info = {"reference": tracking_ref, "url": notify.tracking_url(tracking_ref)}
    wanted = form.notify_request()
    if wanted is None:
        return info, None
    try:
        consent = consent_of(wanted, incident_id=uuid.UUID(data["id"]), reference=tracking_ref,
                             sms_enabled=bool(notify.sms_url))
    except ConsentError:
        return None, _answer(request, account, form, 422, {"notify": text("error.notify")})
    if not await main[tracking.CONSENTS_KEY].write_async(consent):
        return None, _answer(request, account, form, 503, {"form": text("error.broker")}, id=data["id"])
    return info, None


# --------------------------------------------------------------------------- status


def _book(request: web.Request) -> RequestBook | None:
    key = request.app.get(BOOK_LOOKUP_KEY)
    main = request.app[MAIN_APP_KEY]
    return main[key] if key is not None and key in main else None


def _find(book: RequestBook, account: RelayAccount, ref: str) -> ServiceRequest | None:
    ref = ref.strip()
    try:
        found = book.get(str(uuid.UUID(ref)))
    except ValueError:
        short = ref.replace("-", "").replace(" ", "").lower()
        if len(short) != 8:
            return None
        now = datetime.now(UTC)
        rows = book.query(municipalities=account.municipalities, categories=None, start=now - LOOKUP_WINDOW,
                          end=now + timedelta(minutes=10), closed=None, closed_statuses=CLOSED, limit=10**6)
        found = next((r for r in rows if r.id.replace("-", "").startswith(short)), None)
    return found if found is not None and found.municipality in account.municipalities else None


def _describe(request: web.Request, found: ServiceRequest) -> dict[str, Any]:
    agency = request.app[TERRITORY_KEY].agencies.get(found.agency_id or "")
    return {"id": found.id, "reference": reference(found.id), "status": found.status.value,
            "label": text(f"status.{found.status.value}"),
            "since": found.updated.astimezone(LOCAL_TZ).strftime("%d/%m/%Y à %H:%M"),
            "agency": agency.name if agency else None}


async def report_status(request: web.Request) -> web.Response:
    account, _ = await current_account(request)
    if account is None:
        return web.json_response({"errors": {"session": text("session_expired")}}, status=401)
    book = _book(request)
    found = _find(book, account, request.match_info["id"]) if book is not None else None
    if found is None:
        return web.json_response({"errors": {"reference": text("status_not_found")}}, status=404)
    return web.json_response(_describe(request, found))


async def status_page(request: web.Request) -> web.Response:
    account, session = await current_account(request)
    if account is None:
        return _unauthorised(request)
    csrf_form = LoginForm(meta=form_meta(session, request.app[CSRF_KEY], request.app[HOURS_KEY]))
    ref = request.query.get("reference", "").strip()[:64]
    book = _book(request)
    found = _find(book, account, ref) if ref and book is not None else None
    return render(request, "status.html", status=200 if found or not ref else 404, account=account,
                  active="status",
                  reference=ref, found=_describe(request, found) if found else None, form=csrf_form,
                  kind=text(f"kind.{account.kind}"), towns=_towns(request, account))


async def territory_geojson(request: web.Request) -> web.Response:
    account, _ = await current_account(request)
    if account is None:
        return _unauthorised(request)
    territory = request.app[TERRITORY_KEY]
    features = [{"type": "Feature", "geometry": mapping(m.geometry),
                 "properties": {"insee": m.insee, "name": m.name, "mine": m.insee in account.municipalities}}
                for m in territory.municipalities.values()]
    return web.json_response({"type": "FeatureCollection", "features": features})
