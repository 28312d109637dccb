"""HTTP intake for apps and web forms: one POST per event, answered once Kafka has it.

    POST /v1/incidents   Incident fields; id, reported_at and channel ("app") optional
    POST /v1/alerts      a CAP alert (Alert fields)
    POST /v1/status      a StatusUpdate; id optional
    GET  /metrics        Prometheus exposition
    GET  /healthz        liveness

202 ``{"id", "topic", "partition", "offset"}`` only after the broker acknowledged the
event (acks=all), so a 202 means "the hub has it". 422 lists each invalid field,
400 is unreadable JSON, 413 an oversized body, 503 a broker that did not acknowledge in
time: the client retries with the *same id* (the answer carries it), which consumers
de-duplicate. The Kafka producer's delivery callback runs on a poller thread; each
request awaits its own report through an asyncio future.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from veille.config import Settings
from veille.producers import metrics
from veille.producers.sdk import RECORD_FIELD, DeliveryReport, Publisher, Rejected, incident_defaults
from veille.schemas.models import Channel

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024  # an incident is < 10 kB; a CAP alert with polygons stays well under
PUBLISHER_KEY = web.AppKey("publisher", Publisher)
ACK_TIMEOUT_KEY = web.AppKey("ack_timeout", float)
MAX_BODY_KEY = web.AppKey("max_body_bytes", int)


def _errors(status: int, errors: list[dict[str, str]], **extra: Any) -> web.Response:
    return web.json_response({"errors": errors, **extra}, status=status)


def _incident_defaults(data: dict[str, Any], request: web.Request) -> dict[str, Any]:
    return incident_defaults(data, request.query.get("channel", Channel.app.value))


def _status_defaults(data: dict[str, Any], request: web.Request) -> dict[str, Any]:
    if data.get("id") in (None, ""):
        data["id"] = str(uuid.uuid4())
    return data


def _no_defaults(data: dict[str, Any], request: web.Request) -> dict[str, Any]:
    return data


Defaults = Callable[[dict[str, Any], web.Request], dict[str, Any]]


def _handler(record_type: str, endpoint: str, defaults: Defaults) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        response = await _publish(request, record_type, defaults)
        metrics.INTAKE_REQUESTS.labels(endpoint, str(response.status)).inc()
        return response

    return handle


async def _publish(request: web.Request, record_type: str, defaults: Defaults) -> web.Response:
    publisher = request.app[PUBLISHER_KEY]
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _errors(413, [{"field": RECORD_FIELD,
                              "reason": f"body larger than {request.app[MAX_BODY_KEY]} bytes"}])
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        metrics.REJECTED.labels(record_type, "invalid_json").inc()
        return _errors(400, [{"field": RECORD_FIELD, "reason": f"invalid JSON: {exc}"}])
    if not isinstance(data, dict):
        metrics.REJECTED.labels(record_type, "not_an_object").inc()
        return _errors(400, [{"field": RECORD_FIELD, "reason": "body must be a JSON object"}])

    loop = asyncio.get_running_loop()
    delivered: asyncio.Future[DeliveryReport] = loop.create_future()

    def resolve(report: DeliveryReport) -> None:
        if not delivered.done():  # the request may have timed out already
            delivered.set_result(report)

    def on_result(report: DeliveryReport) -> None:  # runs on the producer's poller thread
        loop.call_soon_threadsafe(resolve, report)

    try:
        queued = publisher.publish(defaults(data, request), record_type=record_type, on_result=on_result)
    except Rejected as exc:
        return _errors(422, [e.as_json() for e in exc.errors])
    try:
        report = await asyncio.wait_for(asyncio.shield(delivered), request.app[ACK_TIMEOUT_KEY])
    except TimeoutError:
        report = None
    if report is None or not report.ok:
        # The event may still be delivered later: the client retries with the same id.
        reason = report.error if report else "broker did not acknowledge in time"
        return web.json_response({"id": queued.event_id, "topic": queued.topic,
                                  "errors": [{"field": RECORD_FIELD, "reason": reason}]},
                                 status=503, headers={"Retry-After": "5"})
    return web.json_response({"id": queued.event_id, "topic": queued.topic,
                              "partition": report.partition, "offset": report.offset}, status=202)


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "queued": len(request.app[PUBLISHER_KEY])})


def make_app(publisher: Publisher, *, ack_timeout: float | None = None,
             max_body_bytes: int = MAX_BODY_BYTES, close_publisher: bool = True) -> web.Application:
    """The intake application; it serves the publisher's delivery reports while it runs.

    ``ack_timeout`` (default: the producer's delivery timeout + 1 s) bounds how long a
    request waits for the broker before answering 503.
    """
    app = web.Application(client_max_size=max_body_bytes)
    app[PUBLISHER_KEY] = publisher
    app[MAX_BODY_KEY] = max_body_bytes
    app[ACK_TIMEOUT_KEY] = (ack_timeout if ack_timeout is not None
                            else publisher.settings.delivery_timeout_ms / 1000 + 1)
    app.router.add_post("/v1/incidents", _handler("Incident", "incidents", _incident_defaults))
    app.router.add_post("/v1/alerts", _handler("Alert", "alerts", _no_defaults))
    app.router.add_post("/v1/status", _handler("StatusUpdate", "status", _status_defaults))
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


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int | None = None,
          known_municipalities: set[str] | None = None) -> None:
    """Run the intake until interrupted (``veille intake serve``)."""
    publisher = Publisher(settings, client_id="veille-intake", known_municipalities=known_municipalities)
    app = make_app(publisher)
    web.run_app(app, host=host, port=settings.intake_port if port is None else port,
                print=lambda msg: log.info("%s", msg))
