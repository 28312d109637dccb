"""CAP 1.2 XML in: POST /v1/alerts (application/cap+xml) and ``veille import cap``, real broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cap_helpers import BOMB, CAP_XML, EXTERNAL, SPEC_EXAMPLE, atom, today
from producer_helpers import consume, isolated_settings, message_count

from veille.config import Settings
from veille.producers.cap_xml import CapError, parse_cap
from veille.producers.gate import intake_config
from veille.producers.http_intake import make_app
from veille.producers.intake_keys import KeyStore
from veille.producers.sdk import Publisher
from veille.schemas.models import Alert
from veille.topics import Topics

Client = TestClient[Any, Any]
def run(settings: Settings, scenario: Callable[[Client, str], Awaitable[None]], *,
        alerts: bool = True) -> None:
    keys = KeyStore(settings.state_dir / f"keys-{uuid.uuid4().hex[:6]}.json")
    _, token = keys.issue("préfecture", municipalities=["35401"], alerts=alerts)
    config = replace(intake_config(settings, keys), ack_timeout=10)

    async def main() -> None:
        publisher = Publisher(settings, client_id="test-cap")
        headers = {"Authorization": f"Bearer {token}"}
        async with TestClient(TestServer(make_app(publisher, config)), headers=headers) as client:
            await scenario(client, token)

    asyncio.run(main())


def test_spec_example_maps_to_the_alert_record() -> None:
    (alert,) = parse_cap(today(SPEC_EXAMPLE))
    assert alert["identifier"] == "KSTO1055887203" and alert["sender"] == "KSTO@NWS.NOAA.GOV"
    assert (alert["status"], alert["msg_type"], alert["scope"]) == ("Actual", "Alert", "Public")
    (info,) = alert["infos"]
    assert info["category"] == ["Met"] and info["event"] == "SEVERE THUNDERSTORM"
    assert info["event_codes"] == [{"value_name": "SAME", "value": "SVR"}]
    assert info["expires"].utcoffset().total_seconds() == -7 * 3600
    (area,) = info["areas"]
    assert area["polygons"][0][0] == {"lat": 38.47, "lon": -120.14} and len(area["polygons"][0]) == 5
    assert [g["value"] for g in area["geocodes"]] == ["006109", "006009", "006003"]


@pytest.mark.parametrize(("change", "reason"), [
    (("<polygon>38.47,-120.14 38.34,-119.95 38.52,-119.74 38.62,-119.89 38.47,-120.14</polygon>",
      "<polygon>38.47,-120.14 38.34,-119.95 38.52,-119.74 38.62,-119.89</polygon>"), "closed ring"),
    (("<polygon>", "<circle>38.47,-120.14 12</circle><circle>38.47,-120.14</circle><polygon>"),
     "is not 'lat,lon radius'"),
    (("<urgency>Immediate</urgency>", "<urgency>Soon</urgency>"), "'Soon' is not one of"),
    (("<scope>Public</scope>", ""), "missing required element <scope>"),
    (("<identifier>KSTO1055887203", "<identifier>KSTO,1055887203"), "must not contain spaces, commas"),
    (("<category>Met</category>", "<category>Weather</category>"), "'Weather' is not one of"),
    (("-07:00</expires>", "</expires>"), "is not a CAP dateTime with its offset"),
    (("<areaDesc>", "<areaDescr>"), "malformed XML"),
])
def test_spec_violations_are_named(change: tuple[str, str], reason: str) -> None:
    with pytest.raises(CapError) as caught:
        parse_cap(today(SPEC_EXAMPLE).replace(*change))
    assert reason in caught.value.reason


def test_cap_document_and_atom_feed_published(kafka: Any) -> None:
    settings = isolated_settings(kafka.settings, "capok")
    topic = Topics(settings.topic_prefix).alerts
    feed_ids = [f"urn:veille:test:{uuid.uuid4()}" for _ in range(2)]

    async def scenario(client: Client, token: str) -> None:
        resp = await client.post("/v1/alerts", data=today(SPEC_EXAMPLE).encode(), headers=CAP_XML)
        assert resp.status == 202, await resp.text()
        (published,) = (await resp.json())["published"]
        assert published["id"] == "KSTO1055887203" and published["topic"] == topic
        feed = atom(*(today(SPEC_EXAMPLE, i) for i in feed_ids))
        resp = await client.post("/v1/alerts", data=feed.encode(),
                                 headers={"Content-Type": "application/atom+xml"})
        assert resp.status == 202, await resp.text()
        assert [p["id"] for p in (await resp.json())["published"]] == feed_ids

    run(settings, scenario)
    alerts = [Alert.decode(m.value()) for m in consume(settings, [topic], 3)]
    assert sorted(a.identifier for a in alerts) == sorted(["KSTO1055887203", *feed_ids])
    spec = next(a for a in alerts if a.identifier == "KSTO1055887203")
    assert spec.infos[0].areas[0].polygons[0][1].lon == -119.95 and spec.infos[0].instruction


def test_refused_documents_publish_nothing(kafka: Any) -> None:
    settings = isolated_settings(kafka.settings, "capbad")

    async def scenario(client: Client, token: str) -> None:
        async def post(document: str, status: int, reason: str) -> None:
            resp = await client.post("/v1/alerts", data=document.encode(), headers=CAP_XML)
            assert resp.status == status, await resp.text()
            assert reason in (await resp.json())["errors"][0]["reason"]

        await post(BOMB, 400, "refused XML: DTDForbidden")
        await post(EXTERNAL, 400, "refused XML")
        await post("<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'><identifier>x</alert>", 400,
                   "malformed XML")
        await post(today(SPEC_EXAMPLE).replace("<sent>", "<!-- --><sentx>").replace("</sent>", "</sentx>"),
                   422, "missing required element <sent>")
        await post(SPEC_EXAMPLE, 422, "before the hub existed")  # the spec's 2003 date, as is
        await post("<feed xmlns='http://www.w3.org/2005/Atom'><entry><content>x</content></entry></feed>",
                   422, "no CAP 1.2 <alert>")
        # One bad entry: the good one is not published either.
        await post(atom(today(SPEC_EXAMPLE), today(SPEC_EXAMPLE).replace("<event>", "<!---->")
                        .replace("SEVERE THUNDERSTORM</event>", "")), 422, "<event>")

    run(settings, scenario)

    async def not_an_authority(client: Client, token: str) -> None:
        resp = await client.post("/v1/alerts", data=today(SPEC_EXAMPLE).encode(), headers=CAP_XML)
        assert resp.status == 403

    run(settings, not_an_authority, alerts=False)
    assert message_count(settings, [Topics(settings.topic_prefix).alerts]) == 0


def test_veille_import_cap(kafka: Any, tmp_path: Path) -> None:
    settings = isolated_settings(kafka.settings, "capcli")
    env = {**os.environ, "VEILLE_TOPIC_PREFIX": settings.topic_prefix,
           "VEILLE_STATE_DIR": str(kafka.settings.state_dir)}
    good, bad = tmp_path / "alert.xml", tmp_path / "bomb.xml"
    good.write_text(atom(today(SPEC_EXAMPLE, "urn:veille:cli:1"), today(SPEC_EXAMPLE, "urn:veille:cli:2")))
    bad.write_text(BOMB)
    veille = [sys.executable, "-m", "veille.cli", "import", "cap"]
    done = subprocess.run([*veille, str(bad)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "refused XML" in done.stderr
    done = subprocess.run([*veille, str(good)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "2 acknowledged" in done.stdout
    topic = Topics(settings.topic_prefix).alerts
    assert sorted(Alert.decode(m.value()).identifier for m in consume(settings, [topic], 2)) == \
        ["urn:veille:cli:1", "urn:veille:cli:2"]
