"""HTTP intake (aiohttp app in-process) against the real broker."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from producer_helpers import (
    alert,
    consume,
    incident,
    isolated_settings,
    jsonable,
    message_count,
    publisher_key,
    status,
)
from producer_helpers import run_intake as run
from prometheus_client.parser import text_string_to_metric_families

from veille.config import Settings
from veille.producers.gate import Quota, intake_config
from veille.producers.http_intake import make_app
from veille.producers.intake_keys import KeyStore
from veille.producers.sdk import Publisher
from veille.schemas.models import Alert, Channel, Incident, StatusUpdate
from veille.topics import Topics


@pytest.fixture(scope="module")
def settings(kafka: Any) -> Settings:
    return isolated_settings(kafka.settings, "http")


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
    update = status(str(uuid.uuid4()), dispatch_id=str(uuid.uuid4()))
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
        assert resp.status == 403 and (await resp.json())["code"] == "municipality_mismatch"
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
        assert samples[("veille_intake_requests_total", (("endpoint", "incidents"), ("status", "422")))] >= 1
        assert samples[("veille_intake_requests_total", (("endpoint", "incidents"), ("status", "403")))] >= 1

    run(s, scenario, max_body_bytes=4096)
    all_topics = [topics.intake(m) for m in ("35401", "35406")] + [topics.alerts, topics.status]
    assert message_count(s, all_topics) == 0


def test_unacknowledged_answers_503_with_the_id_to_retry(tmp_path: Path) -> None:
    s = Settings(bootstrap_servers="127.0.0.1:1", delivery_timeout_ms=60_000, topic_prefix="nowhere")
    body = incident()

    async def scenario(client: TestClient[Any, Any]) -> None:
        resp = await client.post("/v1/incidents", data=jsonable(body))
        assert resp.status == 503
        answer = await resp.json()
        assert answer["id"] == body["id"] and resp.headers["Retry-After"]

    async def main() -> None:
        publisher = Publisher(s, extra_config={"log_level": 0})
        keys = KeyStore(tmp_path / "keys.json")
        _, token = keys.issue("t", municipalities=[body["municipality"]])
        app = make_app(publisher, replace(intake_config(s, keys), ack_timeout=0.5), close_publisher=False)
        async with TestClient(TestServer(app), headers={"X-API-Key": token}) as client:
            await scenario(client)
        # Queued but never acknowledged: the publisher reports it, it is not lost silently.
        summary = publisher.flush(0.1)
        assert summary.pending == 1 and summary.acknowledged == 0

    asyncio.run(main())


# --------------------------------------------------------------------------- trust boundary (issue 15)


def test_every_post_needs_a_valid_key_and_rotation_and_revocation_take_effect_at_once(kafka: Any) -> None:
    s = isolated_settings(kafka.settings, "httpkeys")
    topics = Topics(s.topic_prefix)
    keys, token = publisher_key(s)
    key_id = token.split("_")[1]
    body = incident()

    async def scenario(client: TestClient[Any, Any]) -> None:
        for endpoint, payload in (("/v1/incidents", body), ("/v1/alerts", alert()),
                                  ("/v1/status", status(str(uuid.uuid4()), dispatch_id=str(uuid.uuid4())))):
            resp = await client.post(endpoint, data=jsonable(payload))
            assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer"), endpoint
        ok = {"Authorization": f"Bearer {token}"}
        resp = await client.post("/v1/incidents", data=jsonable(body), headers=ok)
        assert resp.status == 202
        for bad in (token[:-1] + ("A" if token[-1] != "A" else "B"), "veille_nokey_x", "garbage"):
            resp = await client.post("/v1/incidents", data=jsonable(incident()), headers={"X-API-Key": bad})
            assert resp.status == 403 and (await resp.json())["code"] == "bad_key"
        new = keys.rotate(key_id)
        resp = await client.post("/v1/incidents", data=jsonable(incident()), headers=ok)
        assert resp.status == 403  # the old token stops at once, the intake reloads the file
        resp = await client.post("/v1/incidents", data=jsonable(incident()), headers={"X-API-Key": new})
        assert resp.status == 202
        keys.revoke(key_id)
        resp = await client.post("/v1/incidents", data=jsonable(incident()), headers={"X-API-Key": new})
        assert resp.status == 403

    run(s, scenario, keys=keys, token=None)
    stored = json.loads((keys.path).read_text())
    assert token.split("_")[2] not in json.dumps(stored)  # only a digest of the secret is kept
    assert (keys.path.stat().st_mode & 0o777) == 0o600
    assert message_count(s, [topics.intake("35401")]) == 2


def test_a_key_speaks_only_for_its_municipalities_agencies_and_alert_right(kafka: Any) -> None:
    s = isolated_settings(kafka.settings, "httpscope")
    topics = Topics(s.topic_prefix)
    keys = KeyStore(s.state_dir / f"scoped-{uuid.uuid4().hex[:6]}.json")
    _, town = keys.issue("Mairie 35401", municipalities=["35401"])
    _, police = keys.issue("PM 35401", agencies=["pm-35401"])
    _, ghost = keys.issue("stale key", agencies=["ghost-agency"])

    async def scenario(client: TestClient[Any, Any]) -> None:
        async def post(endpoint: str, payload: dict[str, Any], token: str) -> tuple[int, dict[str, Any]]:
            resp = await client.post(endpoint, data=jsonable(payload), headers={"X-API-Key": token})
            return resp.status, await resp.json()

        assert (await post("/v1/incidents", incident(municipality="35402"), town))[1]["code"] == \
            "municipality_mismatch"
        forged = status(str(uuid.uuid4()), dispatch_id=str(uuid.uuid4()))
        code, answer = await post("/v1/status", forged, police)
        assert (code, answer["code"]) == (403, "agency_mismatch")  # sdis35 is not its agency
        assert (await post("/v1/alerts", alert(), town))[0] == 403
        assert (await post("/v1/incidents", incident(), police))[0] == 403
        # An agency unknown to the territory is refused at once (422), not dead-lettered later.
        code, answer = await post("/v1/status", status(str(uuid.uuid4()), agency_id="ghost-agency",
                                                       dispatch_id=str(uuid.uuid4())), ghost)
        assert code == 422 and answer["errors"][0]["field"] == "agency_id"
        no_ref = status(str(uuid.uuid4()), agency_id="pm-35401", dispatch_id=None)
        code, answer = await post("/v1/status", no_ref, police)
        assert code == 422 and answer["errors"][0]["field"] == "dispatch_id"
        assert (await post("/v1/incidents", incident(), town))[0] == 202

    run(s, scenario, keys=keys, token=None)
    others = [topics.intake("35402"), topics.alerts, topics.status]
    assert message_count(s, others) == 0 and message_count(s, [topics.intake("35401")]) == 1


def test_anonymous_reports_only_where_configured_and_quotas_per_client(kafka: Any) -> None:
    s = isolated_settings(kafka.settings, "httpanon")
    keys = KeyStore(s.state_dir / f"none-{uuid.uuid4().hex[:6]}.json")

    async def scenario(client: TestClient[Any, Any]) -> None:
        resp = await client.post("/v1/incidents", data=jsonable(incident(municipality="35402")))
        assert resp.status == 202
        resp = await client.post("/v1/incidents", data=jsonable(incident(municipality="35401")))
        assert resp.status == 403 and (await resp.json())["code"] == "municipality_mismatch"
        resp = await client.post("/v1/alerts", data=jsonable(alert()))
        assert resp.status == 401  # never anonymous
        resp = await client.post("/v1/incidents", data=jsonable(incident(municipality="35402")))
        assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1

    run(s, scenario, keys=keys, token=None, anonymous_municipalities=frozenset({"35402"}),
        anonymous_quota=Quota(0.01, 2))


def test_hostile_bodies_get_a_reason_not_a_crash(kafka: Any) -> None:
    s = isolated_settings(kafka.settings, "httphostile")
    topics = Topics(s.topic_prefix)

    async def scenario(client: TestClient[Any, Any]) -> None:
        deep = b"[" * 100_000 + b"]" * 100_000
        resp = await client.post("/v1/incidents", data=b'{"a": ' + deep + b"}")
        assert resp.status == 400 and "nested too deeply" in (await resp.json())["errors"][0]["reason"]
        resp = await client.post("/v1/incidents", data=b'{"severity": ' + b"9" * 5000 + b"}")
        assert resp.status == 400 and "invalid JSON" in (await resp.json())["errors"][0]["reason"]

    run(s, scenario, max_body_bytes=512 * 1024)
    assert message_count(s, [topics.intake("35401")]) == 0


def test_a_retry_without_server_fields_is_byte_identical(kafka: Any) -> None:
    """Issue 15 #7: the retry of an id gets the same filled-in fields, so the router drops it."""
    s = isolated_settings(kafka.settings, "httpretry")
    topics = Topics(s.topic_prefix)
    body = incident()
    del body["reported_at"], body["channel"]
    answers: list[dict[str, Any]] = []

    async def scenario(client: TestClient[Any, Any]) -> None:
        for _ in range(2):
            resp = await client.post("/v1/incidents", data=jsonable(body))
            assert resp.status == 202
            answers.append(await resp.json())

    run(s, scenario)
    assert answers[0]["filled"] == answers[1]["filled"]
    assert set(answers[0]["filled"]) == {"reported_at", "channel"}
    first, second = consume(s, [topics.intake("35401")], 2)
    assert first.value() == second.value()


def test_a_slow_body_is_timed_out(kafka: Any) -> None:
    s = isolated_settings(kafka.settings, "httpslow")

    async def scenario(client: TestClient[Any, Any]) -> None:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(b"POST /v1/incidents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + client.session.headers["Authorization"][7:].encode()
                     + b"\r\nContent-Length: 1000\r\n\r\n{")
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        assert b" 408 " in status_line

    run(s, scenario, body_timeout=1.0)
