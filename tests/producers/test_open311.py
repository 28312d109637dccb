"""Open311 GeoReport v2 on the HTTP intake (in-process aiohttp) against the real broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from confluent_kafka import Producer
from producer_helpers import consume, isolated_settings, message_count

from veille.config import Settings
from veille.producers import open311
from veille.producers.gate import intake_config
from veille.producers.http_intake import make_app
from veille.producers.intake_keys import KeyStore
from veille.producers.open311_requests import RequestBook
from veille.producers.sdk import Publisher
from veille.schemas.models import Incident, RoutedIncident, StatusUpdate
from veille.territory import load_territory
from veille.topics import Topics

Client = TestClient[Any, Any]
IN_35401 = {"lat": "48.15", "long": "-1.7002"}
IN_35406 = {"lat": "48.046", "long": "-1.5595"}
V2 = "/open311/v2"


@pytest.fixture(scope="module")
def settings(kafka: Any) -> Settings:
    return isolated_settings(kafka.settings, "o311")


def run(settings: Settings, scenario: Callable[[Client, str], Awaitable[None]]) -> None:
    keys = KeyStore(settings.state_dir / f"keys-{uuid.uuid4().hex[:6]}.json")
    _, token = keys.issue("appli Montveille", municipalities=["35401"])
    config = replace(intake_config(settings, keys), ack_timeout=10)

    async def main() -> None:
        publisher = Publisher(settings, client_id="test-open311", known_municipalities={"35401", "35406"})
        app = make_app(publisher, config)
        open311.register(app, load_territory(), RequestBook(settings))
        async with TestClient(TestServer(app)) as client:
            await scenario(client, token)

    asyncio.run(main())


def test_services_and_definitions(settings: Settings) -> None:
    async def scenario(client: Client, token: str) -> None:
        resp = await client.get(f"{V2}/services.json")
        assert resp.status == 200
        services = {s["service_code"]: s for s in await resp.json()}
        assert services["flood"]["service_name"] == "Inondation" and services["flood"]["type"] == "realtime"
        assert services["flood"]["metadata"] is True and services["graffiti"]["metadata"] is False
        assert services["flood"]["group"] == "Risques climatiques"
        assert "inondation" in services["flood"]["keywords"]
        resp = await client.get(f"{V2}/services.xml", params={"jurisdiction_id": "35401"})
        root = ET.fromstring(await resp.read())
        assert root.tag == "services" and len(root.findall("service")) == len(services)
        assert root.find("service/service_code") is not None
        resp = await client.get(f"{V2}/services.json", params={"jurisdiction_id": "75056"})
        assert resp.status == 404 and (await resp.json())[0]["code"] == 404
        resp = await client.get(f"{V2}/services/flood.json")
        (attr,) = (await resp.json())["attributes"]
        assert attr["code"] == "severity" and {v["key"] for v in attr["values"]} >= {"minor", "critical"}
        resp = await client.get(f"{V2}/services/graffiti.xml")
        root = ET.fromstring(await resp.read())
        assert root.tag == "service_definition" and list(root.find("attributes") or []) == []
        resp = await client.get(f"{V2}/services/meteor.xml")
        error = ET.fromstring(await resp.read())
        assert resp.status == 404 and error.tag == "errors" and error.findtext("error/code") == "404"

    run(settings, scenario)


def test_request_published_once_acknowledged(settings: Settings) -> None:
    topic = Topics(settings.topic_prefix).intake("35401")
    ids: list[str] = []

    async def scenario(client: Client, token: str) -> None:
        form = {"api_key": token, "service_code": "flood", **IN_35401, "attribute[severity]": "severe",
                "description": "Cave inondée", "first_name": "Anne", "last_name": "Martin",
                "email": "anne@example.org", "phone": "0600000000", "device_id": "DEV-1", "account_id": "A-9",
                "media_url": "https://photos.example.org/cave.jpg"}
        resp = await client.post(f"{V2}/requests.json", data=form)
        assert resp.status == 201, await resp.text()
        (answer,) = await resp.json()
        assert answer["service_notice"]
        ids.append(answer["service_request_id"])
        # JSON body, XML answer, address only with the jurisdiction.
        resp = await client.post(f"{V2}/requests.xml", json={
            "api_key": token, "service_code": "graffiti", "jurisdiction_id": "35401",
            "address_string": "2 place de la Mairie", "attribute": {"severity": "minor"}})
        assert resp.status == 201
        root = ET.fromstring(await resp.read())
        assert root.tag == "service_requests"
        ids.append(root.findtext("request/service_request_id") or "")
        # The app reads its request back at once (before the router's record).
        resp = await client.get(f"{V2}/requests/{ids[0]}.json", params={"api_key": token})
        (got,) = await resp.json()
        assert got["status"] == "open" and got["status_notes"] == "Signalement reçu"
        assert got["service_code"] == "flood" and got["jurisdiction_id"] == "35401"

    run(settings, scenario)
    incidents = {str(i.id): i for i in (Incident.decode(m.value()) for m in consume(settings, [topic], 2))}
    first = incidents[ids[0]]
    assert first.channel == "app" and first.severity == "severe" and first.municipality == "35401"
    assert first.reporter is not None and first.reporter.name == "Anne Martin"
    assert first.reporter.email == "anne@example.org" and first.reporter.phone == "0600000000"
    assert first.attachments[0].media_type == "image/jpeg" and first.description == "Cave inondée"
    assert b"DEV-1" not in first.encode() and b"A-9" not in first.encode()
    second = incidents[ids[1]]
    assert second.location is None and second.address == "2 place de la Mairie"
    assert second.severity == "minor"


def test_refusals_publish_nothing(kafka: Any) -> None:
    s = isolated_settings(kafka.settings, "o311bad")
    topics = Topics(s.topic_prefix)

    async def scenario(client: Client, token: str) -> None:
        async def post(status: int, fmt: str = "json", **form: str) -> str:
            resp = await client.post(f"{V2}/requests.{fmt}", data=form)
            assert resp.status == status, await resp.text()
            if fmt == "xml":
                return ET.fromstring(await resp.read()).findtext("error/description") or ""
            (err,) = await resp.json()
            assert err["code"] == status
            return str(err["description"])

        assert "api_key" in await post(403, service_code="flood", **IN_35401)
        await post(403, api_key="veille_nope_nope", service_code="flood", **IN_35401)
        assert "municipality_mismatch" in await post(403, api_key=token, service_code="flood", **IN_35406)
        assert "municipality_mismatch" in await post(403, "xml", api_key=token, service_code="flood",
                                                     jurisdiction_id="35406", address_string="1 rue")
        await post(404, api_key=token, service_code="meteor", **IN_35401)
        await post(404, api_key=token, service_code="flood", jurisdiction_id="75056", address_string="x")
        assert "jurisdiction_id" in await post(400, api_key=token, service_code="flood",
                                               address_string="1 rue")
        assert "outside" in await post(400, api_key=token, service_code="flood", lat="45.0", long="2.0")
        assert "location" in await post(400, api_key=token, service_code="flood")
        assert "not in jurisdiction" in await post(400, api_key=token, service_code="flood",
                                                   jurisdiction_id="35401", **IN_35406)
        assert "attribute[severity]" in await post(400, api_key=token, service_code="flood",
                                                   **{"attribute[severity]": "apocalyptic"}, **IN_35401)
        assert "media_url" in await post(400, api_key=token, service_code="flood",
                                         media_url="file:///etc/passwd", **IN_35401)
        resp = await client.get(f"{V2}/requests.json")
        assert resp.status == 403
        resp = await client.get(f"{V2}/requests/not-a-request.xml", params={"api_key": token})
        assert resp.status == 404 and ET.fromstring(await resp.read()).findtext("error/code") == "404"

    run(s, scenario)
    assert message_count(s, [topics.intake(m) for m in ("35401", "35406")]) == 0


def _routed(incident_id: uuid.UUID, category: str, reported: datetime, municipality: str = "35401") -> bytes:
    return RoutedIncident(
        id=incident_id, municipality=municipality, category=category, severity="moderate", channel="app",
        location={"lat": 48.15, "lon": -1.7}, occurred_at=reported, reported_at=reported,
        routed_at=reported + timedelta(seconds=1),
        dispatches=[{"agency_id": "st-val-de-veille", "service": "public_works", "rule": "public-space",
                     "cross_boundary": False}]).encode()


def _status(incident_id: uuid.UUID, status: str, at: datetime, note: str | None = None) -> bytes:
    return StatusUpdate(id=uuid.uuid4(), incident_id=incident_id, agency_id="sdis35",
                        dispatch_id=uuid.uuid4(), status=status, at=at, note=note).encode()


def test_status_read_from_the_routed_topic(kafka: Any) -> None:
    s = isolated_settings(kafka.settings, "o311rm")
    routed = Topics(s.topic_prefix).routed
    now = datetime.now(UTC).replace(microsecond=0)
    graffiti, flood, old, elsewhere = (uuid.uuid4() for _ in range(4))
    producer = Producer(s.kafka_client_config())  # as the router writes it: keyed by incident id
    for key, value in [
        (graffiti, _routed(graffiti, "graffiti", now - timedelta(hours=2))),
        (flood, _routed(flood, "flood", now - timedelta(hours=1))),
        (old, _routed(old, "graffiti", now - timedelta(days=120))),
        (elsewhere, _routed(elsewhere, "graffiti", now - timedelta(hours=1), municipality="35406")),
        (graffiti, _status(graffiti, "dispatched", now - timedelta(minutes=50))),
        (graffiti, _status(graffiti, "resolved", now - timedelta(minutes=10), note="Mme Dupont rappelée")),
        (graffiti, _status(graffiti, "on_site", now - timedelta(minutes=30))),  # late re-delivery
        (flood, _status(flood, "on_site", now - timedelta(minutes=5))),
    ]:
        producer.produce(routed, key=key.bytes, value=value)
    assert producer.flush(10) == 0

    async def scenario(client: Client, token: str) -> None:
        params = {"api_key": token}
        deadline = time.monotonic() + 20
        while True:
            # Keyed by incident: every partition must have been read, not only flood's.
            resp = await client.get(f"{V2}/requests/{flood}.json", params=params)
            seen_old = (await client.get(f"{V2}/requests/{old}.json", params=params)).status == 200
            if (resp.status == 200 and seen_old
                    and (await resp.json())[0]["status_notes"] == "Intervention en cours"):
                break
            assert time.monotonic() < deadline, "the read model never caught up"
            await asyncio.sleep(0.2)
        resp = await client.get(f"{V2}/requests/{graffiti}.json", params=params)
        (got,) = await resp.json()
        assert got["status"] == "closed" and got["status_notes"] == "Résolu"
        assert "Dupont" not in await resp.text() and got["agency_responsible"]
        resp = await client.get(f"{V2}/requests.json", params=params)
        assert [r["service_request_id"] for r in await resp.json()] == [str(flood), str(graffiti)]
        resp = await client.get(f"{V2}/requests.json", params={**params, "status": "open"})
        assert [r["service_request_id"] for r in await resp.json()] == [str(flood)]
        resp = await client.get(f"{V2}/requests.xml", params={**params, "status": "closed",
                                                             "service_code": "graffiti"})
        root = ET.fromstring(await resp.read())
        assert [e.text for e in root.findall("request/service_request_id")] == [str(graffiti)]
        start, end = (now - timedelta(days=130)).isoformat(), (now - timedelta(days=100)).isoformat()
        resp = await client.get(f"{V2}/requests.json", params={**params, "start_date": start,
                                                              "end_date": end})
        assert [r["service_request_id"] for r in await resp.json()] == [str(old)]
        ids = f"{flood},{elsewhere},{uuid.uuid4()}"
        resp = await client.get(f"{V2}/requests.json", params={**params, "service_request_id": ids})
        assert [r["service_request_id"] for r in await resp.json()] == [str(flood)]  # 35406: not this key's
        resp = await client.get(f"{V2}/requests/{elsewhere}.json", params=params)
        assert resp.status == 404
        resp = await client.get(f"{V2}/requests.json", params={**params, "status": "maybe"})
        assert resp.status == 400

    run(s, scenario)


def test_veille_open311_key_is_an_intake_key(tmp_path: Path) -> None:
    env = {**os.environ, "VEILLE_STATE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "veille.cli", "open311", "key", "--name", "Appli Montveille",
                           "--municipality", "35401"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    token = done.stdout.rsplit(" ", 1)[-1].strip()
    key = KeyStore(tmp_path / "intake_keys.json").authenticate(token)
    assert key is not None and key.municipalities == ["35401"] and not key.alerts and not key.agencies
