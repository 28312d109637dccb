"""HTTP intake for apps and web forms: one POST per event, answered once Kafka has it.

    POST /v1/incidents   Incident fields; id, reported_at and channel ("app") optional
    POST /v1/alerts      a CAP alert (Alert fields as JSON, or CAP 1.2 XML / an Atom feed of
                         CAP alerts with Content-Type application/cap+xml: producers/cap_xml.py)
    POST /v1/status      a StatusUpdate (with the dispatch_id it answers); id optional
    GET  /metrics        Prometheus exposition
    GET  /healthz        liveness
    /open311/v2/...      Open311 GeoReport v2 (producers/open311.py, when serve() has a territory)

Who may publish what: every POST carries an API key (``Authorization: Bearer <token>`` or
``X-API-Key``), issued by ``veille intake keys`` to one publisher and scoped to its
municipalities (incidents), its agencies (status updates) and, for alerting authorities,
CAP alerts: the same anti-spoofing rules as the broker's ACLs. Anonymous incident reports
are accepted only for the municipalities listed in ``VEILLE_INTAKE_ANONYMOUS_MUNICIPALITIES``
(a town's public web form), never alerts nor status updates. Each key (and each anonymous
client address) has its own request quota.

202 ``{"id", "topic", "partition", "offset", "filled"}`` only after the broker acknowledged
the event (acks=all), so a 202 means "the hub has it"; ``filled`` holds every field the
intake filled in (id, reported_at, channel), and a retry of the same id within the window
gets the same values, so its bytes are identical and the router drops it as a re-send.
401 no key, 403 a bad key or an event the key may not publish, 429 over quota, 422 lists
each invalid field, 400 unreadable JSON, 408 a body that arrives too slowly, 413 an
oversized body, 503 a broker that did not acknowledge in time: the client retries with the
*same id* (the answer carries it and the filled fields). The Kafka producer's delivery
callback runs on a poller thread; each request awaits its own report through an asyncio
future.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from veille.config import Settings
from veille.producers import metrics
from veille.producers.intake_keys import IntakeKey, KeyStore
from veille.producers.sdk import RECORD_FIELD, DeliveryReport, Publisher, Queued, Rejected
from veille.runtime import tune_gc
from veille.schemas.models import Channel
from veille.schemas.registry import RegistryUnavailable

if TYPE_CHECKING:
    from veille.territory import Territory

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024  # an incident is < 10 kB; a CAP alert at its geometry bounds < 200 kB
BODY_TIMEOUT = 10.0  # seconds for the whole body: a client trickling bytes holds no slot longer
FILLED_WINDOW = 100_000  # ids whose filled-in fields are remembered for identical retries
CAP_CONTENT_TYPES = frozenset({"application/cap+xml", "application/atom+xml", "application/xml", "text/xml"})


@dataclass(frozen=True)
class Quota:
    rate: float  # requests per second, sustained
    burst: int


@dataclass(frozen=True)
class IntakeConfig:
    keys: KeyStore
    anonymous_municipalities: frozenset[str] = frozenset()
    key_quota: Quota = Quota(50.0, 200)
    anonymous_quota: Quota = Quota(1.0, 20)
    ack_timeout: float = 31.0
    max_body_bytes: int = MAX_BODY_BYTES
    body_timeout: float = BODY_TIMEOUT


PUBLISHER_KEY = web.AppKey("publisher", Publisher)
CONFIG_KEY = web.AppKey("config", IntakeConfig)


class TokenBuckets:
    """One token bucket per principal (key id, or anonymous client address)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.capacity = capacity

    def take(self, principal: str, quota: Quota, now: float | None = None) -> float:
        """0 when the request may go, else the seconds to wait."""
        now = time.monotonic() if now is None else now
        tokens, last = self.buckets.pop(principal, (float(quota.burst), now))
        tokens = min(float(quota.burst), tokens + (now - last) * quota.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / quota.rate
        self.buckets[principal] = (tokens, now)
        if len(self.buckets) > self.capacity:
            self.buckets.popitem(last=False)
        return wait


class IntakeState:
    def __init__(self) -> None:
        self.buckets = TokenBuckets()
        self.filled: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def fill(self, record_type: str, data: dict[str, Any], channel: str) -> dict[str, Any]:
        """Fill what a front-end may leave out; the same id always gets the same values."""
        given = data.get("id") not in (None, "")
        if not given:
            data["id"] = str(uuid.uuid4())
        remembered = self.filled.get(f"{record_type}:{data['id']}", {}) if given else {}
        filled: dict[str, Any] = {} if given else {"id": data["id"]}
        if record_type == "Incident":
            defaults = {"reported_at": datetime.now(UTC).isoformat(), "channel": channel}
            for name, value in defaults.items():
                if data.get(name) in (None, ""):
                    data[name] = filled[name] = remembered.get(name, value)
        if filled:
            key = f"{record_type}:{data['id']}"
            self.filled[key] = filled
            self.filled.move_to_end(key)
            if len(self.filled) > FILLED_WINDOW:
                self.filled.popitem(last=False)
        return filled


STATE_KEY = web.AppKey("state", IntakeState)


def _errors(status: int, errors: list[dict[str, str]], **extra: Any) -> web.Response:
    return web.json_response({"errors": errors, **extra}, status=status)


def _token(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("X-API-Key")


def _forbidden(record_type: str, reason: str, detail: str, field: str = RECORD_FIELD) -> web.Response:
    metrics.REJECTED.labels(record_type, reason).inc()
    return _errors(403, [{"field": field, "reason": detail}], code=reason)


def authorise(key: IntakeKey | None, record_type: str, data: dict[str, Any],
              anonymous_municipalities: Collection[str]) -> web.Response | None:
    """None when ``key`` (None: anonymous) may publish this event, else the 403 answer."""
    if record_type == "Incident":
        allowed: Collection[str] = key.municipalities if key else anonymous_municipalities
        muni = data.get("municipality")
        if muni not in allowed:
            return _forbidden(record_type, "municipality_mismatch",
                              f"this key may not report incidents for municipality {muni!r}", "municipality")
    elif record_type == "StatusUpdate":
        agency = data.get("agency_id")
        if key is None or agency not in key.agencies:
            return _forbidden(record_type, "agency_mismatch",
                              f"this key may not post status updates as agency {agency!r}", "agency_id")
    elif key is None or not key.alerts:
        return _forbidden(record_type, "not_an_alerting_authority", "this key may not publish CAP alerts")
    return None


def _handler(record_type: str, endpoint: str) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        response = await _publish(request, record_type)
        metrics.INTAKE_REQUESTS.labels(endpoint, str(response.status)).inc()
        return response

    return handle


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused before its body is read (each front-end words it its own way)."""

    status: int
    code: str
    reason: str
    retry_after: int | None = None


def admit(app: web.Application, token: str | None, remote: str | None, record_type: str,
          *, anonymous: bool = True) -> tuple[IntakeKey | None, Refusal | None]:
    """Who is speaking (None: anonymous) and whether within quota, for any front-end."""
    config, state = app[CONFIG_KEY], app[STATE_KEY]
    key = config.keys.authenticate(token) if token else None
    if token and key is None:
        metrics.REJECTED.labels(record_type, "bad_key").inc()
        return None, Refusal(403, "bad_key", "unknown, rotated or revoked API key")
    if key is None and not (anonymous and record_type == "Incident" and config.anonymous_municipalities):
        metrics.REJECTED.labels(record_type, "no_key").inc()
        return None, Refusal(401, "no_key", "an API key is required")
    principal, quota = (f"key:{key.id}", config.key_quota) if key else \
        (f"anon:{remote}", config.anonymous_quota)
    wait = state.buckets.take(principal, quota)
    if wait > 0:
        metrics.REJECTED.labels(record_type, "quota").inc()
        return key, Refusal(429, "quota", "request quota exceeded", max(1, round(wait)))
    return key, None


async def read_body(request: web.Request, record_type: str) -> bytes | Refusal:
    config = request.app[CONFIG_KEY]
    try:
        return await asyncio.wait_for(request.read(), config.body_timeout)
    except web.HTTPRequestEntityTooLarge:
        return Refusal(413, "too_large", f"body larger than {config.max_body_bytes} bytes")
    except TimeoutError:
        metrics.REJECTED.labels(record_type, "slow_body").inc()
        return Refusal(408, "slow_body", f"body not received within {config.body_timeout:.0f}s")


async def deliver(app: web.Application, data: dict[str, Any] | Any,
                  record_type: str) -> tuple[Queued, DeliveryReport | None]:
    """Publish one event and wait for the broker's acknowledgement (None: not in time).

    Raises :class:`Rejected` (invalid), ``RecursionError`` (nested too deeply) and
    :class:`RegistryUnavailable` before anything is queued.
    """
    publisher, config = app[PUBLISHER_KEY], app[CONFIG_KEY]
    loop = asyncio.get_running_loop()
    delivered: asyncio.Future[DeliveryReport] = loop.create_future()

    def resolve(report: DeliveryReport) -> None:
        if not delivered.done():  # the request may have timed out already
            delivered.set_result(report)

    def on_result(report: DeliveryReport) -> None:  # runs on the producer's poller thread
        loop.call_soon_threadsafe(resolve, report)

    queued = publisher.publish(data, record_type=record_type, on_result=on_result)
    try:
        return queued, await asyncio.wait_for(asyncio.shield(delivered), config.ack_timeout)
    except TimeoutError:
        return queued, None


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
        from veille.producers.cap_xml import publish_cap

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
    filled = state.fill(record_type, data, request.query.get("channel", Channel.app.value)) \
        if record_type != "Alert" else {}
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
                              "partition": report.partition, "offset": report.offset}, status=202)


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "queued": len(request.app[PUBLISHER_KEY])})


def make_app(publisher: Publisher, config: IntakeConfig, *, close_publisher: bool = True) -> web.Application:
    """The intake application; it serves the publisher's delivery reports while it runs."""
    app = web.Application(client_max_size=config.max_body_bytes)
    app[PUBLISHER_KEY] = publisher
    app[CONFIG_KEY] = config
    app[STATE_KEY] = IntakeState()
    app.router.add_post("/v1/incidents", _handler("Incident", "incidents"))
    app.router.add_post("/v1/alerts", _handler("Alert", "alerts"))
    app.router.add_post("/v1/status", _handler("StatusUpdate", "status"))
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)

    async def start_polling(app: web.Application) -> None:
        publisher.start_polling()

    async def close(app: web.Application) -> None:
        if close_publisher:
            await asyncio.get_running_loop().run_in_executor(None, publisher.close)

    app.on_startup.append(start_polling)
    app.on_cleanup.append(close)
    return app


def intake_config(settings: Settings, keys: KeyStore | None = None) -> IntakeConfig:
    return IntakeConfig(
        keys=keys or KeyStore(settings.state_dir / "intake_keys.json"),
        anonymous_municipalities=frozenset(
            m.strip() for m in settings.intake_anonymous_municipalities.split(",") if m.strip()),
        key_quota=Quota(settings.intake_rate_per_second, settings.intake_burst),
        anonymous_quota=Quota(settings.intake_anonymous_rate_per_second, settings.intake_anonymous_burst),
        ack_timeout=settings.delivery_timeout_ms / 1000 + 1,
    )


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int | None = None,
          known_municipalities: set[str] | None = None, known_agencies: set[str] | None = None,
          territory: Territory | None = None) -> None:
    """Run the intake until interrupted (``veille intake serve``); Open311 with a territory."""
    publisher = Publisher(settings, client_id="veille-intake", known_municipalities=known_municipalities,
                          known_agencies=known_agencies)
    app = make_app(publisher, intake_config(settings))
    if territory is not None:
        from veille.producers import open311, relay
        from veille.producers.open311_requests import RequestBook

        open311.register(app, territory, RequestBook(settings))
        relay.register(app, territory, settings, book_key=open311.BOOK_KEY)  # the relays' form, /relais/
    tune_gc()
    # keepalive_timeout: an idle connection is closed after 15 s (slow clients hold no slot).
    web.run_app(app, host=host, port=settings.intake_port if port is None else port,
                keepalive_timeout=15, print=lambda msg: log.info("%s", msg))
