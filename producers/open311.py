"""Open311 GeoReport v2 on the HTTP intake: the standard most city-reporting apps speak.

    GET  /open311/v2/services.{json|xml}             the territory's incident categories
    GET  /open311/v2/services/{code}.{json|xml}      a service definition
    POST /open311/v2/requests.{json|xml}             report an incident (form-encoded or JSON)
    GET  /open311/v2/requests.{json|xml}             requests and their status (read model)
    GET  /open311/v2/requests/{id}.{json|xml}        one request

``jurisdiction_id`` is an INSEE code of the territory (absent: the whole hub); an unknown
one is 404. The ``api_key`` (form field, query parameter or ``Authorization: Bearer``) IS
an intake key (``veille intake keys issue`` or ``veille open311 key``): it reports only for
its municipalities (403 ``municipality_mismatch``), with the intake's quota, and it is also
required to read requests, which a key sees only for its municipalities (the hub accepts
nothing anonymous; locations of reports are not public data).

A request becomes an Incident: ``service_code`` is the category; the municipality is
``jurisdiction_id`` or the one containing ``lat``/``long`` (both given: they must agree);
``address_string`` without a point needs ``jurisdiction_id``. ``first_name``/``last_name``,
``email`` and ``phone`` become the reporter's contact, which only reaches the dispatches of
the agencies that act (never the shared store); ``device_id`` and ``account_id`` identify a
person and serve no purpose of the hub: they are dropped. ``media_url`` becomes an
attachment; ``media``, a file uploaded in a multipart/form-data request (mySociety's and
Open311's photo upload), becomes a photo of the incident, checked, stripped and kept by
veille.photos (400 ``media: <code>: <reason>`` when refused, 413 too large);
``attribute[severity]`` the severity (default moderate). With
``attribute[veille_notify]=email`` (or ``sms``), the resident consents to hear back at the
request's ``email`` (or ``phone``): the consent goes to the restricted consent topic before the
incident (producers/tracking/consent.py), and the answer's ``service_notice`` gives the
reference and the tracking page. The answer
``[{"service_request_id", "service_notice"}]`` comes only once the broker acknowledged;
errors are ``[{"code", "description"}]`` (400 invalid, 403 key, 404 unknown service or
jurisdiction, 429 quota, 503 broker did not acknowledge: retry).

Read answers carry the status, category, times, point and responsible agency of a request,
never its description, address or contact: free text may name people, and only what the
routed record holds (no personal data) is served.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

from veille.photos.intake import PHOTOS_KEY
from veille.photos.sanitise import PhotoRefused
from veille.producers import metrics, tracking
from veille.producers.gate import CONFIG_KEY, Refusal, admit, deliver, read_body
from veille.producers.intake_keys import IntakeKey
from veille.producers.open311_catalog import (
    CLOSED,
    DEFAULT_SEVERITY,
    SERVICE_NOTICE,
    SERVICES,
    STATUS_NOTES,
    definition,
    error,
    render,
    service,
    service_codes,
)
from veille.producers.open311_requests import RequestBook, ServiceRequest
from veille.producers.photo_upload import FormTooLarge, check_references, read_form
from veille.producers.sdk import Rejected
from veille.producers.tracking.consent import ConsentError, consent_of
from veille.schemas.models import Channel, IncidentCategory
from veille.schemas.registry import RegistryUnavailable
from veille.territory import Territory

PREFIX = "/open311/v2"
TERRITORY_KEY = web.AppKey("open311_territory", Territory)
BOOK_KEY = web.AppKey("open311_book", RequestBook)
MAX_FIELDS = 100
MAX_RESULTS = 1000
DEFAULT_WINDOW = timedelta(days=90)
# Incident fields -> the Open311 parameter a client sent.
PARAMETER = {"location.lat": "lat", "location.lon": "long", "address": "address_string",
             "category": "service_code", "severity": "attribute[severity]", "reporter.email": "email",
             "reporter.phone": "phone", "reporter.name": "first_name/last_name", "attachments": "media_url",
             "photos": "media"}


def _fmt(request: web.Request) -> str:
    return request.match_info["fmt"]


def _jurisdiction(request: web.Request, params: dict[str, str]) -> tuple[str | None, web.Response | None]:
    code = params.get("jurisdiction_id") or None
    if code is not None and code not in request.app[TERRITORY_KEY].municipalities:
        return None, error(_fmt(request), 404, f"jurisdiction_id {code} is not a municipality of this hub")
    return code, None


def _service(request: web.Request, code: str | None) -> IncidentCategory | None:
    if code is None:
        return None
    try:
        category = IncidentCategory(code)
    except ValueError:
        return None
    return category if category in service_codes(request.app[TERRITORY_KEY]) else None


async def services(request: web.Request) -> web.Response:
    _, refused = _jurisdiction(request, dict(request.query))
    if refused is not None:
        return refused
    territory = request.app[TERRITORY_KEY]
    return render(_fmt(request), "services", [service(territory, c) for c in service_codes(territory)])


async def service_definition(request: web.Request) -> web.Response:
    _, refused = _jurisdiction(request, dict(request.query))
    if refused is not None:
        return refused
    category = _service(request, request.match_info["code"])
    if category is None:
        return error(_fmt(request), 404, f"unknown service_code {request.match_info['code']}")
    return render(_fmt(request), "service_definition", definition(request.app[TERRITORY_KEY], category))


# --------------------------------------------------------------------------- POST requests


def _refusal(fmt: str, refusal: Refusal) -> web.Response:
    status = 403 if refusal.status == 401 else refusal.status  # Open311: a missing key is 403
    response = error(fmt, status, "api_key is required" if refusal.code == "no_key" else refusal.reason)
    if refusal.retry_after:
        response.headers["Retry-After"] = str(refusal.retry_after)
    return response


def _params(body: bytes, content_type: str) -> dict[str, str]:
    """Form-encoded (the spec) or a JSON object; raises ValueError when unreadable."""
    if content_type == "application/json":
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        params = {str(k): "" if v is None else str(v) for k, v in data.items() if not isinstance(v, dict)}
        attributes = data.get("attribute")  # {"attribute": {"severity": "severe"}} as well
        if isinstance(attributes, dict):
            params.update({f"attribute[{k}]": str(v) for k, v in attributes.items()})
        return params
    pairs = parse_qsl(body.decode("utf-8", errors="strict"), keep_blank_values=True,
                      max_num_fields=MAX_FIELDS, strict_parsing=False)
    return dict(pairs)


def _token(request: web.Request, params: dict[str, str]) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return params.get("api_key") or request.query.get("api_key") or None


def _point(params: dict[str, str]) -> tuple[float, float] | None:
    lat, lon = params.get("lat", ""), params.get("long", "")
    if not lat and not lon:
        return None
    try:
        return float(lat), float(lon)
    except ValueError:
        raise ValueError("lat and long must both be decimal degrees") from None


def _municipality(territory: Territory, key: IntakeKey, jurisdiction: str | None,
                  point: tuple[float, float] | None, address: str) -> str:
    """The reported municipality, or ValueError with the reason."""
    if point is None:
        if not address:
            raise ValueError("a location is required: lat and long, or address_string")
        if jurisdiction is None:
            raise ValueError("address_string without lat/long needs a jurisdiction_id (INSEE code)")
        return jurisdiction
    found = territory.locate(point[1], point[0])
    if not found:
        raise ValueError("lat/long is outside the territory of this hub")
    if jurisdiction is not None:
        if jurisdiction not in found:
            raise ValueError(f"lat/long is not in jurisdiction_id {jurisdiction}")
        return jurisdiction
    # On a shared border, the town the key reports for.
    return next((m for m in found if m in key.municipalities), found[0])


def _media(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("media_url must be an http(s) URL")
    media_type = mimetypes.guess_type(parts.path)[0] or "application/octet-stream"
    return {"uri": url, "media_type": media_type}


def _incident(params: dict[str, str], municipality: str, category: IncidentCategory,
              point: tuple[float, float] | None) -> dict[str, Any]:
    now = datetime.now(UTC)
    names = (params.get("first_name", "").strip(), params.get("last_name", "").strip())
    name = " ".join(p for p in names if p)
    contact = {k: v for k, v in (("name", name), ("email", params.get("email", "").strip()),
                                 ("phone", params.get("phone", "").strip())) if v}
    return {
        "id": str(uuid.uuid4()), "municipality": municipality, "category": category.value,
        "severity": params.get("attribute[severity]") or DEFAULT_SEVERITY.value,
        "location": {"lat": point[0], "lon": point[1]} if point else None,
        "address": params.get("address_string") or None, "occurred_at": now, "reported_at": now,
        "channel": Channel.app.value, "reporter": contact or None,
        "description": params.get("description", ""),
        "attachments": [_media(params["media_url"])] if params.get("media_url") else [],
    }


async def post_request(request: web.Request) -> web.Response:
    response = await _post_request(request)
    metrics.INTAKE_REQUESTS.labels("open311", str(response.status)).inc()
    return response


async def _post_request(request: web.Request) -> web.Response:
    fmt, territory = _fmt(request), request.app[TERRITORY_KEY]
    photos, media = request.app.get(PHOTOS_KEY), None
    if request.content_type.startswith("multipart/"):  # with a media upload
        try:
            form, media = await asyncio.wait_for(read_form(request, photos, "media"),
                                                 request.app[CONFIG_KEY].body_timeout)
        except PhotoRefused as exc:
            return error(fmt, 413 if exc.code == "too_large" else 400, f"media: {exc.code}: {exc}")
        except (FormTooLarge, ValueError) as exc:
            return error(fmt, 400, f"unreadable request: {str(exc)[:200]}")
        except TimeoutError:
            return error(fmt, 408, "body not received in time")
        params = dict(form)
    else:
        body = await read_body(request, "Incident")
        if isinstance(body, Refusal):
            return _refusal(fmt, body)
        try:
            params = _params(body, request.content_type)
        except (ValueError, RecursionError) as exc:
            return error(fmt, 400, f"unreadable request: {str(exc)[:200]}")
    key, refusal = admit(request.app, _token(request, params), request.remote, "Incident", anonymous=False)
    if refusal is not None or key is None:
        return _refusal(fmt, refusal or Refusal(403, "no_key", "api_key is required"))
    category = _service(request, params.get("service_code") or None)
    if category is None:
        if not params.get("service_code"):
            return error(fmt, 400, "service_code is required")
        return error(fmt, 404, f"unknown service_code {params['service_code']}")
    jurisdiction, refused = _jurisdiction(request, params)
    if refused is not None:
        return refused
    try:
        point = _point(params)
        municipality = _municipality(territory, key, jurisdiction, point, params.get("address_string", ""))
        data = _incident(params, municipality, category, point)
    except ValueError as exc:
        return error(fmt, 400, str(exc))
    if municipality not in key.municipalities:
        metrics.REJECTED.labels("Incident", "municipality_mismatch").inc()
        return error(fmt, 403, f"municipality_mismatch: this api_key may not report incidents for "
                               f"municipality {municipality}")
    if media is not None and photos is not None:
        try:
            kept = await photos.keep(media)  # stripped, re-encoded, stored by digest
        except PhotoRefused as exc:
            return error(fmt, 400, f"media: {exc.code}: {exc}")
        data["photos"] = [{"sha256": kept.sha256, "media_type": kept.media_type}]
        unknown = await check_references(request.app, data)
        if unknown is not None:
            return error(fmt, 400, f"media: {unknown.reason}")
    notice, ref = SERVICE_NOTICE, None
    if tracking.NOTIFY_KEY in request.app:
        notify = request.app[tracking.NOTIFY_KEY]
        ref = tracking.reference_of(notify, data["id"])
        notice = f"{SERVICE_NOTICE} Référence de suivi : {ref} ({notify.tracking_url(ref)})."
        refused = await _take_consent(request, fmt, params, data, ref)
        if refused is not None:
            return refused
    elif params.get("attribute[veille_notify]"):
        return error(fmt, 400, "attribute[veille_notify]: this hub takes no consent to hear back")
    try:
        queued, report = await deliver(request.app, data, "Incident")
    except Rejected as exc:
        return error(fmt, 400, *(f"{PARAMETER.get(e.field, e.field)}: {e.reason}" for e in exc.errors))
    except RecursionError:
        return error(fmt, 400, "nested too deeply")
    except RegistryUnavailable as exc:
        return error(fmt, 503, str(exc))
    if report is None or not report.ok:
        response = error(fmt, 503, report.error if report and report.error else
                         "broker did not acknowledge in time; retry")
        response.headers["Retry-After"] = "5"
        return response
    if BOOK_KEY in request.app:  # read-your-writes before the router's record comes back
        request.app[BOOK_KEY].submitted(queued.event_id, category.value, municipality,
                                        data["reported_at"], data["location"], ref)
    return render(fmt, "service_requests", [{"service_request_id": queued.event_id,
                                             "service_notice": notice, "account_id": None}], 201)


async def _take_consent(request: web.Request, fmt: str, params: dict[str, str], data: dict[str, Any],
                        ref: str) -> web.Response | None:
    """``attribute[veille_notify]``: the consent, written before the incident (None: done or none)."""
    channel = params.get("attribute[veille_notify]", "").strip()
    if not channel:
        return None
    notify = request.app[tracking.NOTIFY_KEY]
    address = params.get("phone" if channel == "sms" else "email", "")
    try:
        consent = consent_of({"channel": channel, "address": address}, incident_id=uuid.UUID(data["id"]),
                             reference=ref, sms_enabled=bool(notify.sms_url))
    except ConsentError as exc:
        metrics.REJECTED.labels("Incident", "consent").inc()
        name = {"notify.channel": "attribute[veille_notify]",
                "notify.address": "phone" if channel == "sms" else "email"}.get(exc.field, exc.field)
        return error(fmt, 400, f"{name}: {exc.reason}")
    if not await request.app[tracking.CONSENTS_KEY].write_async(consent):
        response = error(fmt, 503, "consent not acknowledged by the broker; retry")
        response.headers["Retry-After"] = "5"
        return response
    return None


# --------------------------------------------------------------------------- GET requests


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _as_open311(territory: Territory, r: ServiceRequest) -> dict[str, Any]:
    category = IncidentCategory(r.category)
    agency = territory.agencies.get(r.agency_id or "")
    return {
        "service_request_id": r.id, "status": "closed" if r.status in CLOSED else "open",
        "status_notes": STATUS_NOTES[r.status], "service_name": SERVICES[category][0],
        "service_code": r.category, "description": None,
        "agency_responsible": agency.name if agency else r.agency_id, "service_notice": SERVICE_NOTICE,
        "requested_datetime": _iso(r.requested), "updated_datetime": _iso(r.updated),
        "expected_datetime": None, "address": None, "address_id": None, "zipcode": None,
        "lat": r.lat, "long": r.lon, "media_url": None, "jurisdiction_id": r.municipality,
    }


def _reader(request: web.Request) -> tuple[IntakeKey | None, web.Response | None]:
    key, refusal = admit(request.app, _token(request, {}), request.remote, "Incident", anonymous=False)
    if refusal is not None or key is None:
        return None, _refusal(_fmt(request), refusal or Refusal(403, "no_key", "api_key is required"))
    if BOOK_KEY not in request.app:
        return None, error(_fmt(request), 503, "request status is not available on this intake")
    return key, None


def _time(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} must be a W3C date-time, e.g. 2026-01-31T12:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def get_requests(request: web.Request) -> web.Response:
    fmt, territory = _fmt(request), request.app[TERRITORY_KEY]
    key, refused = _reader(request)
    if refused is not None or key is None:
        return refused or error(fmt, 403, "api_key is required")
    q = request.query
    jurisdiction, refused = _jurisdiction(request, dict(q))
    if refused is not None:
        return refused
    towns = set(key.municipalities) & ({jurisdiction} if jurisdiction else set(key.municipalities))
    if q.get("service_request_id"):
        ids = [i.strip() for i in q["service_request_id"].split(",") if i.strip()][:MAX_RESULTS]
        found = [r for r in (request.app[BOOK_KEY].get(i) for i in ids) if r and r.municipality in towns]
        return render(fmt, "service_requests", [_as_open311(territory, r) for r in found])
    status = q.get("status") or None
    if status not in (None, "open", "closed"):
        return error(fmt, 400, "status must be open or closed")
    codes = {c.strip() for c in q.get("service_code", "").split(",") if c.strip()}
    try:
        end = _time(q["end_date"], "end_date") if q.get("end_date") else datetime.now(UTC)
        start = _time(q["start_date"], "start_date") if q.get("start_date") else end - DEFAULT_WINDOW
    except ValueError as exc:
        return error(fmt, 400, str(exc))
    rows = request.app[BOOK_KEY].query(municipalities=towns, categories=codes or None, start=start, end=end,
                                       closed=None if status is None else status == "closed",
                                       closed_statuses=CLOSED, limit=MAX_RESULTS)
    return render(fmt, "service_requests", [_as_open311(territory, r) for r in rows])


async def get_request(request: web.Request) -> web.Response:
    fmt = _fmt(request)
    key, refused = _reader(request)
    if refused is not None or key is None:
        return refused or error(fmt, 403, "api_key is required")
    found = request.app[BOOK_KEY].get(request.match_info["id"])
    if found is None or found.municipality not in key.municipalities:
        return error(fmt, 404, f"no service request {request.match_info['id']}")
    return render(fmt, "service_requests", [_as_open311(request.app[TERRITORY_KEY], found)])


def register(app: web.Application, territory: Territory, book: RequestBook | None = None) -> None:
    """Add the Open311 routes to the intake ``app`` (before it starts); ``book`` serves reads."""
    app[TERRITORY_KEY] = territory
    fmt = "{fmt:json|xml}"
    app.router.add_get(f"{PREFIX}/services.{fmt}", services)
    app.router.add_get(PREFIX + "/services/{code:[a-z_]+}." + fmt, service_definition)
    app.router.add_post(f"{PREFIX}/requests.{fmt}", post_request)
    app.router.add_get(f"{PREFIX}/requests.{fmt}", get_requests)
    app.router.add_get(PREFIX + "/requests/{id:[^/.]+}." + fmt, get_request)
    if book is not None:
        app[BOOK_KEY] = book

        async def start(app: web.Application) -> None:
            book.start()

        async def stop(app: web.Application) -> None:
            book.stop()

        app.on_startup.append(start)
        app.on_cleanup.append(stop)

