"""HTTP intake, the server: mounts the front-ends on one aiohttp application and runs it.

    POST /v1/incidents   Incident fields; id, reported_at and channel ("app") optional
    POST /v1/alerts      a CAP alert (Alert fields as JSON, or CAP 1.2 XML / an Atom feed of
                         CAP alerts with Content-Type application/cap+xml: producers/cap_xml.py)
    POST /v1/status      a StatusUpdate (with the dispatch_id it answers); id optional
    POST /v1/photos      a photo, kept stripped by digest (producers/photo_upload.py)
    GET  /photos/<token> a photo, for whoever holds its signed URL (veille/photos/intake.py)
    GET  /metrics        Prometheus exposition
    GET  /healthz        liveness
    /open311/v2/...      Open311 GeoReport v2 (producers/open311.py, when serve() has a territory)
    /relais/...          the relays' form (producers/relay/, when serve() has a territory)
    /reponse/...         the response page of the delivery e-mails (producers/response/)
    /agence/...          the agencies' desk (producers/desk/, when serve() has a territory)
    /suivi/...           the residents' tracking page and unsubscribe links (producers/tracking/)

Who may publish what, quotas, body limits and delivery to Kafka are the gate's
(``producers/gate.py``), which every front-end imports; this module only words the JSON
API's answers. A request carries its API key as ``Authorization: Bearer <token>`` or
``X-API-Key``.

202 ``{"id", "topic", "partition", "offset", "filled"}`` only after the broker acknowledged
the event (acks=all), so a 202 means "the hub has it"; ``filled`` holds every field the
intake filled in (id, reported_at, channel), and a retry of the same id within the window
gets the same values, so its bytes are identical and the router drops it as a re-send. An
incident's answer also carries its ``reference`` and ``tracking_url`` (the public page,
``/suivi/<reference>``); with ``"notify": {"channel", "address"}`` (producers/tracking/consent.py)
the consent to hear back is written to the restricted consent topic, acknowledged, *before* the
incident is published (the notifier relies on that order), never into the incident itself.
401 no key, 403 a bad key or an event the key may not publish, 429 over quota, 422 lists
each invalid field, 400 unreadable JSON, 408 a body that arrives too slowly, 413 an
oversized body, 503 a broker that did not acknowledge in time: the client retries with the
*same id* (the answer carries it and the filled fields).
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from veille.config import Settings
from veille.notify.consent import ConsentWriter
from veille.notify.reference import reference
from veille.notify.settings import NotifySettings
from veille.photos.intake import install as install_photos
from veille.photos.settings import PhotoSettings
from veille.producers import desk, metrics, open311, open311_updates, photo_upload, relay, response, tracking
from veille.producers.access_log import AccessLogger
from veille.producers.cap_xml import publish_cap
from veille.producers.gate import (
    CONFIG_KEY,
    PUBLISHER_KEY,
    STATE_KEY,
    IntakeConfig,
    Refusal,
    admit,
    authorise,
    deliver,
    install,
    intake_config,
    read_body,
)
from veille.producers.open311_requests import RequestBook
from veille.producers.sdk import RECORD_FIELD, Publisher, Rejected
from veille.producers.tracking.consent import CONSENT_FIELD, ConsentError, consent_of
from veille.runtime import tune_gc
from veille.schemas.models import Channel
from veille.schemas.registry import RegistryUnavailable
from veille.territory import Territory
from veille.web.oidc import oidc_routes

log = logging.getLogger(__name__)

CAP_CONTENT_TYPES = frozenset({"application/cap+xml", "application/atom+xml", "application/xml", "text/xml"})


def _errors(status: int, errors: list[dict[str, str]], **extra: Any) -> web.Response:
    return web.json_response({"errors": errors, **extra}, status=status)


def _token(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("X-API-Key")


def _handler(record_type: str, endpoint: str) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        response = await _publish(request, record_type)
        metrics.INTAKE_REQUESTS.labels(endpoint, str(response.status)).inc()
        return response

    return handle


def _refused(refusal: Refusal, field: str = RECORD_FIELD) -> web.Response:
    headers = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after else {}
    if refusal.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="veille-intake"'
    reason = refusal.reason + (" (Authorization: Bearer)" if refusal.code == "no_key" else "")
    body: dict[str, Any] = {"errors": [{"field": field, "reason": reason}]}
    if refusal.status in (401, 403, 429):
        body["code"] = refusal.code
    return web.json_response(body, status=refusal.status, headers=headers)


async def _publish(request: web.Request, record_type: str) -> web.Response:
    config = request.app[CONFIG_KEY]
    state = request.app[STATE_KEY]
    # 1. Who is speaking, and within quota?
    key, refusal = admit(request.app, _token(request), request.remote, record_type)
    if refusal is not None:
        return _refused(refusal, "api_key" if refusal.code in ("bad_key", "no_key") else RECORD_FIELD)
    # 2. What is it?
    body = await read_body(request, record_type)
    if isinstance(body, Refusal):
        return _refused(body)
    if record_type == "Alert" and request.content_type in CAP_CONTENT_TYPES:
        return await publish_cap(request.app, key, body)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        # ValueError covers malformed JSON, bad UTF-8 and integers past Python's digit limit;
        # RecursionError, nesting deeper than the parser's stack.
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        metrics.REJECTED.labels(record_type, "invalid_json").inc()
        return _errors(400, [{"field": RECORD_FIELD, "reason": f"invalid JSON: {detail}"}])
    if not isinstance(data, dict):
        metrics.REJECTED.labels(record_type, "not_an_object").inc()
        return _errors(400, [{"field": RECORD_FIELD, "reason": "body must be a JSON object"}])
    # 3. May this publisher say it?
    refused = authorise(key, record_type, data, config.anonymous_municipalities)
    if refused is not None:
        return refused
    consent_raw = data.pop(CONSENT_FIELD, None) if record_type == "Incident" else None
    filled = state.fill(record_type, data, request.query.get("channel", Channel.app.value)) \
        if record_type != "Alert" else {}
    if record_type == "Incident":
        unknown = await photo_upload.check_references(request.app, data)
        if unknown is not None:
            return _errors(unknown.status, [{"field": unknown.code, "reason": unknown.reason}])
    hearing: dict[str, str] = {}
    if record_type == "Incident" and tracking.NOTIFY_KEY in request.app:
        notify = request.app[tracking.NOTIFY_KEY]
        ref = tracking.reference_of(notify, str(data["id"]))
        hearing = {"reference": ref, "tracking_url": notify.tracking_url(ref)}
        if consent_raw is not None:
            refused = await _take_consent(request, data, consent_raw, ref)
            if refused is not None:
                return refused
    elif consent_raw is not None:
        return _errors(422, [{"field": CONSENT_FIELD, "reason": "this intake takes no consent to hear back"}])
    try:
        queued, report = await deliver(request.app, data, record_type)
    except Rejected as exc:
        return _errors(422, [e.as_json() for e in exc.errors])
    except RecursionError:
        return _errors(400, [{"field": RECORD_FIELD, "reason": "nested too deeply"}])
    except RegistryUnavailable as exc:  # Confluent framing and an id not cached yet
        return web.json_response({"errors": [{"field": RECORD_FIELD, "reason": str(exc)}]},
                                 status=503, headers={"Retry-After": "5"})
    if report is None or not report.ok:
        # The event may still be delivered later: the client retries with the same id.
        reason = report.error if report else "broker did not acknowledge in time"
        return web.json_response({"id": queued.event_id, "topic": queued.topic, "filled": filled,
                                  "errors": [{"field": RECORD_FIELD, "reason": reason}]},
                                 status=503, headers={"Retry-After": "5"})
    return web.json_response({"id": queued.event_id, "topic": queued.topic, "filled": filled,
                              "partition": report.partition, "offset": report.offset, **hearing}, status=202)


async def _take_consent(request: web.Request, data: dict[str, Any], raw: Any,
                        ref: str) -> web.Response | None:
    """Write the consent (acknowledged) before the incident; None when done, else the answer."""
    notify = request.app[tracking.NOTIFY_KEY]
    try:
        consent = consent_of(raw, incident_id=uuid.UUID(str(data["id"])), reference=ref,
                             sms_enabled=bool(notify.sms_url))
    except ConsentError as exc:
        metrics.REJECTED.labels("Incident", "consent").inc()
        return _errors(422, [{"field": exc.field, "reason": exc.reason}])
    except ValueError:
        return _errors(422, [{"field": "id", "reason": "a UUID"}])
    if not await request.app[tracking.CONSENTS_KEY].write_async(consent):
        return web.json_response({"id": data["id"], "errors": [{"field": CONSENT_FIELD, "reason":
                                  "consent not acknowledged by the broker; retry"}]},
                                 status=503, headers={"Retry-After": "5"})
    return None


async def _photo(request: web.Request) -> web.Response:
    response = await photo_upload.upload(request, _token(request))
    metrics.INTAKE_REQUESTS.labels("photos", str(response.status)).inc()
    return response


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "queued": len(request.app[PUBLISHER_KEY])})


def make_app(publisher: Publisher, config: IntakeConfig, *, close_publisher: bool = True) -> web.Application:
    """The intake application; it serves the publisher's delivery reports while it runs."""
    app = web.Application(client_max_size=config.max_body_bytes)
    install(app, publisher, config, close_publisher=close_publisher)
    app.router.add_post("/v1/incidents", _handler("Incident", "incidents"))
    app.router.add_post("/v1/alerts", _handler("Alert", "alerts"))
    app.router.add_post("/v1/status", _handler("StatusUpdate", "status"))
    app.router.add_post("/v1/photos", _photo)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    return app


def _desk_routes(settings: Settings, territory: Territory,
                 publisher: Publisher) -> Callable[[web.Application], None] | None:
    """The desk's extra routes: single sign-on's, and the PCS activation and prevention forms
    when the territory has a chain (pcs.yaml)."""
    from veille.pcs.plan import PCS_FILE, read_plan
    from veille.producers.desk.pcs import kafka_publisher, pcs_routes
    from veille.producers.desk.prevention import kafka_walk_publisher, prevention_routes

    sso = oidc_routes(settings, territory)
    if not (settings.territory_dir / PCS_FILE).is_file():
        return sso
    plan = read_plan(settings.territory_dir / PCS_FILE)
    pcs = pcs_routes(plan, kafka_publisher(settings))
    prevention = prevention_routes(plan, kafka_walk_publisher(settings, publisher))

    def both(desk_app: web.Application) -> None:
        if sso is not None:
            sso(desk_app)
        pcs(desk_app)
        prevention(desk_app)

    return both


def install_pcs_page(app: web.Application, territory: Territory, settings: Settings,
                     publisher: Publisher, notify: NotifySettings) -> None:
    """The representatives' page, when the territory has a PCS chain (pcs.yaml)."""
    from veille.pcs.messages import PageLinks
    from veille.pcs.plan import PCS_FILE, read_plan
    from veille.pcs.register import REGISTER_DIR, Register
    from veille.pcs.settings import PcsSettings
    from veille.producers import pcs_page

    if not (settings.territory_dir / PCS_FILE).is_file():
        return
    key = PcsSettings().register_key.get_secret_value()
    reg = Register(settings.state_dir / REGISTER_DIR, key.encode()) if key else None
    links = PageLinks(notify.link_key.get_secret_value(), notify.public_base_url)
    pcs_page.register(app, pcs_page.PcsPage(territory, read_plan(settings.territory_dir / PCS_FILE),
                                            settings, links, reg, publisher))


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int | None = None,
          known_municipalities: set[str] | None = None, known_agencies: set[str] | None = None,
          territory: Territory | None = None) -> None:
    """Run the intake until interrupted (``veille intake serve``); Open311 with a territory."""
    publisher = Publisher(settings, client_id="veille-intake", known_municipalities=known_municipalities,
                          known_agencies=known_agencies)
    app = make_app(publisher, intake_config(settings))
    landing = None
    install_photos(app, PhotoSettings(), settings.state_dir)  # before the front-ends that take photos
    if territory is not None:
        notify = NotifySettings()
        references = functools.partial(reference, notify.reference_key.get_secret_value())
        book = RequestBook(settings, reference=references)
        open311.register(app, territory, book)
        open311_updates.register(app)  # mySociety's servicerequestupdates
        relay.register(app, territory, settings, book_key=open311.BOOK_KEY)  # the relays' form, /relais/
        desk_app = desk.register(app, territory, settings,  # the agencies' desk, /agence/
                                 extra_routes=_desk_routes(settings, territory, publisher))  # sign-on, PCS
        landing = desk.landing(desk_app, settings)
        # the residents' tracking page and unsubscribe links, /suivi/; consents to hear back
        tracking.register(app, book, ConsentWriter(settings, "veille-intake-consents"), notify, territory)
        install_pcs_page(app, territory, settings, publisher, notify)  # representatives' /pcs/
    # The e-mails' response page, /reponse/ (its links land on the desk for a logged-in body).
    response.register(app, settings, territory=territory, landing=landing)
    tune_gc()
    # keepalive_timeout: an idle connection is closed after 15 s (slow clients hold no slot).
    # The access log leaves out query strings, referrers and the response links' tokens.
    web.run_app(app, host=host, port=settings.intake_port if port is None else port,
                keepalive_timeout=15, access_log_class=AccessLogger, print=lambda msg: log.info("%s", msg))
