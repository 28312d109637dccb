"""HTTP intake (aiohttp app in-process) against the real broker."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from producer_helpers import alert, consume, incident, isolated_settings, message_count, status
from prometheus_client.parser import text_string_to_metric_families

from veille.config import Settings
from veille.producers.http_intake import make_app
from veille.producers.sdk import Publisher
from veille.schemas.models import Alert, Channel, Incident, StatusUpdate
from veille.topics import Topics

Scenario = Callable[[TestClient[Any, Any]], Awaitable[None]]


def run(settings: Settings, scenario: Scenario, **app_options: Any) -> None:
    async def main() -> None:
        publisher = Publisher(settings, client_id="test-intake", known_municipalities={"35401", "35402"})
        async with TestClient(TestServer(make_app(publisher, **app_options))) as client:
            await scenario(client)

    asyncio.run(main())


@pytest.fixture(scope="module")
def settings(kafka: Any) -> Settings:
    return isolated_settings(kafka.settings, "http")


def jsonable(data: dict[str, Any]) -> str:
    return json.dumps(data, default=str)


def test_incident_accepted_once_acknowledged_with_defaults(settings: Settings) -> None:
    topics = Topics(settings.topic_prefix)
    body = incident(municipality="35402")
    for key in ("id", "reported_at", "channel"):
        del body[key]
    answers: list[dict[str, Any]] = []

    async def scenario(client: TestClient[Any, Any]) -> None:
        resp = await client.post("/v1/incidents", data=jsonable(body))
        assert resp.status == 202, await resp.text()
        answers.append(await resp.json())
        resp = await client.post("/v1/incidents?channel=web", data=jsonable(incident(channel=None)))
        assert resp.status == 202

    run(settings, scenario)
    answer = answers[0]
    assert answer["topic"] == topics.intake("35402") and answer["offset"] >= 0
    (msg,) = consume(settings, [topics.intake("35402")], 1)
    got = Incident.decode(msg.value())
    assert str(got.id) == answer["id"] and got.channel == Channel.app and got.reported_at
    (msg,) = consume(settings, [topics.intake("35401")], 1)
    assert Incident.decode(msg.value()).channel == Channel.web


def test_alert_and_status(settings: Settings) -> None:
    topics = Topics(settings.topic_prefix)
    the_alert = alert()
    update = status(str(uuid.uuid4()))
    del update["id"]

    async def scenario(client: TestClient[Any, Any]) -> None:
        resp = await client.post("/v1/alerts", data=jsonable(the_alert))
        assert resp.status == 202 and (await resp.json())["id"] == the_alert["identifier"]
        resp = await client.post("/v1/status", data=jsonable(update))
        assert resp.status == 202 and (await resp.json())["topic"] == topics.status

    run(settings, scenario)
    (msg,) = consume(settings, [topics.alerts], 1)
    assert Alert.decode(msg.value()).identifier == the_alert["identifier"]
    (msg,) = consume(settings, [topics.status], 1)
    assert str(StatusUpdate.decode(msg.value()).incident_id) == update["incident_id"]


def test_bad_requests_are_refused_and_never_published(kafka: Any) -> None:
    s = isolated_settings(kafka.settings, "httpbad")
    topics = Topics(s.topic_prefix)

    async def scenario(client: TestClient[Any, Any]) -> None:
        resp = await client.post("/v1/incidents", data=jsonable(incident(location={"lat": 95, "lon": 0},
                                                                         category="meteor")))
        assert resp.status == 422
        errors = {e["field"]: e["reason"] for e in (await resp.json())["errors"]}
        assert errors["location.lat"] == "Input should be less than or equal to 90"
        assert set(errors) == {"location.lat", "category"}
        resp = await client.post("/v1/incidents", data=jsonable(incident(municipality="35406")))
        assert resp.status == 422 and (await resp.json())["errors"][0]["field"] == "municipality"
        resp = await client.post("/v1/alerts", data=jsonable(alert(infos=[])))
        assert resp.status == 422 and (await resp.json())["errors"][0]["field"] == "infos"
        resp = await client.post("/v1/incidents", data=b'{"municipality": ')
        assert resp.status == 400 and "invalid JSON" in (await resp.json())["errors"][0]["reason"]
        resp = await client.post("/v1/status", data=b"[1]")
        assert resp.status == 400
        resp = await client.post("/v1/incidents", data=b"x" * 5000)
        assert resp.status == 413
        resp = await client.get("/v1/incidents")
        assert resp.status == 405
        resp = await client.get("/healthz")
        assert resp.status == 200 and (await resp.json())["status"] == "ok"
        resp = await client.get("/metrics")
        assert resp.status == 200
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(await resp.text()) for s in family.samples}
        assert samples[("veille_producer_rejected_total",
                        (("reason", "validation"), ("record_type", "Incident")))] >= 1
        assert samples[("veille_intake_requests_total", (("endpoint", "incidents"), ("status", "422")))] >= 2

    run(s, scenario, max_body_bytes=4096)
    all_topics = [topics.intake(m) for m in ("35401", "35406")] + [topics.alerts, topics.status]
    assert message_count(s, all_topics) == 0


def test_unacknowledged_answers_503_with_the_id_to_retry() -> None:
    s = Settings(bootstrap_servers="127.0.0.1:1", delivery_timeout_ms=60_000, topic_prefix="nowhere")
    body = incident()

    async def scenario(client: TestClient[Any, Any]) -> None:
        resp = await client.post("/v1/incidents", data=jsonable(body))
        assert resp.status == 503
        answer = await resp.json()
        assert answer["id"] == body["id"] and resp.headers["Retry-After"]

    async def main() -> None:
        publisher = Publisher(s, extra_config={"log_level": 0})
        app = make_app(publisher, ack_timeout=0.5, close_publisher=False)
        async with TestClient(TestServer(app)) as client:
            await scenario(client)
        # Queued but never acknowledged: the publisher reports it, it is not lost silently.
        summary = publisher.flush(0.1)
        assert summary.pending == 1 and summary.acknowledged == 0

    asyncio.run(main())
