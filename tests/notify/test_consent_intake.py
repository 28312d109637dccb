"""Consents at reporting, on the real broker: the JSON API, Open311 and the relays' form write a
consent to the restricted consent topic before the incident, never into it; bad consents are
refused with a clear error; Open311's servicerequestupdates lists the overall states."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from notify_helpers import routed, status
from producer_helpers import consume, isolated_settings
from relay_helpers import accounts, form_tokens, log_in, report

from veille.config import Settings
from veille.notify.consent import ConsentWriter
from veille.notify.reference import reference
from veille.notify.settings import NotifySettings
from veille.producers import open311, open311_updates, relay, tracking
from veille.producers.gate import intake_config
from veille.producers.http_intake import make_app
from veille.producers.intake_keys import KeyStore
from veille.producers.open311_requests import RequestBook
from veille.producers.sdk import Publisher
from veille.schemas.models import Incident, NotificationConsent
from veille.territory import load_territory
from veille.topics import Topics

pytestmark = pytest.mark.kafka
Client = TestClient[Any, Any]
NOTIFY = NotifySettings(reference_key="consent-test-key", public_base_url="https://veille.example.fr")
JSON = {"Accept": "application/json"}


@pytest.fixture(scope="module")
def settings(kafka: Any) -> Settings:
    return isolated_settings(kafka.settings, "consent")


Scenario = Callable[[Client, str, RequestBook, tuple[Any, str]], Awaitable[None]]


def run(settings: Settings, scenario: Scenario) -> None:
    keys = KeyStore(settings.state_dir / f"keys-{uuid.uuid4().hex[:6]}.json")
    _, token = keys.issue("appli Montveille", municipalities=["35401"])
    config = replace(intake_config(settings, keys), ack_timeout=10)
    store = accounts(settings)

    async def main() -> None:
        publisher = Publisher(settings, client_id="test-consent", known_municipalities={"35401", "35406"})
        app = make_app(publisher, config)
        book = RequestBook(reference=lambda i: reference("consent-test-key", i))  # fed by the test
        territory = load_territory()
        open311.register(app, territory, book)
        open311_updates.register(app)
        relay.register(app, territory, settings, store, book_key=open311.BOOK_KEY)
        tracking.register(app, book, ConsentWriter(settings, "test-consents"), NOTIFY, territory)
        account = store.issue("Accueil mairie", kind="town_hall_desk", municipalities=["35401"])
        async with TestClient(TestServer(app)) as client:
            await scenario(client, token, book, account)

    asyncio.run(main())


def consents(settings: Settings, count: int) -> list[tuple[str, NotificationConsent | None]]:
    got = consume(settings, [Topics(settings.topic_prefix).notify_consent], count)
    return [(bytes(m.key() or b"").decode(), NotificationConsent.decode(m.value()) if m.value() else None)
            for m in got]


def incident(**over: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"municipality": "35401", "category": "blocked_drain", "severity": "moderate",
            "location": {"lat": 48.15, "lon": -1.7002}, "occurred_at": (now - timedelta(hours=1)).isoformat(),
            "description": "Avaloir bouché rue des Lavoirs", **over}


def test_json_api_consents(settings: Settings) -> None:
    answers: list[dict[str, Any]] = []

    async def scenario(client: Client, token: str, _book: RequestBook, _account: tuple[Any, str]) -> None:
        auth = {"Authorization": f"Bearer {token}"}
        for notify, field in [({"channel": "pigeon", "address": "x"}, "notify.channel"),
                              ({"channel": "email", "address": "not-an-address"}, "notify.address"),
                              # no SMS gateway on this hub:
                              ({"channel": "sms", "address": "06 12 34 56 78"}, "notify.channel"),
                              ({"channel": "email", "address": "a@b.fr", "extra": 1}, "notify.extra"),
                              ("yes", "notify")]:
            resp = await client.post("/v1/incidents", json=incident(notify=notify), headers=auth)
            body = await resp.json()
            assert resp.status == 422 and body["errors"][0]["field"] == field, body
        resp = await client.post("/v1/incidents", headers=auth, json=incident(
            notify={"channel": "email", "address": " jeanne@example.fr "}))
        assert resp.status == 202, await resp.text()
        answers.append(await resp.json())

    run(settings, scenario)
    (answer,) = answers
    assert answer["reference"] == reference("consent-test-key", answer["id"])
    assert answer["tracking_url"] == f"https://veille.example.fr/suivi/{answer['reference']}"
    ((key, consent),) = consents(settings, 1)
    assert key == answer["id"] and consent is not None
    assert (consent.channel.value, consent.address, consent.reference, consent.on_behalf_of_relay) == \
        ("email", "jeanne@example.fr", answer["reference"], False)
    assert "jeanne" not in repr(consent)
    (msg,) = consume(settings, [Topics(settings.topic_prefix).intake("35401")], 1)
    published = Incident.decode(msg.value())
    assert published.reporter is None  # the consent's address is not the agencies' contact


def test_open311_and_relay_consents_and_updates(settings: Settings) -> None:
    out: dict[str, Any] = {}

    async def scenario(client: Client, token: str, book: RequestBook, relay_account: tuple[Any, str]) -> None:
        resp = await client.post("/open311/v2/requests.json", data={
            "api_key": token, "service_code": "blocked_drain", "lat": "48.15", "long": "-1.7002",
            "email": "paul@example.fr", "attribute[veille_notify]": "email"})
        assert resp.status == 201, await resp.text()
        (created,) = await resp.json()
        out["open311"] = created
        resp = await client.post("/open311/v2/requests.json", data={
            "api_key": token, "service_code": "blocked_drain", "lat": "48.15", "long": "-1.7002",
            "attribute[veille_notify]": "email"})  # no e-mail to tell
        assert resp.status == 400 and "email" in (await resp.json())[0]["description"]
        # A desk reports for a resident and asks to be told itself, to call them back.
        account, password = relay_account
        assert (await log_in(client, account.login, password)).status == 303
        csrf, report_id = await form_tokens(client)
        resp = await client.post("/relais/signalements", headers=JSON, data=report(
            csrf, report_id, notify="relay_email", notify_address="accueil@mairie-montveille.fr"))
        assert resp.status == 201, await resp.text()
        out["relay"] = await resp.json()
        csrf, report_id = await form_tokens(client)
        resp = await client.post("/relais/signalements", headers=JSON, data=report(
            csrf, report_id, notify="resident_email"))  # no resident e-mail, no consent ticked
        assert resp.status == 422 and "notify" in (await resp.json())["errors"]
        # servicerequestupdates: the overall state's changes, as the tracking page shows them.
        i = uuid.UUID(created["service_request_id"])
        t0 = datetime.now(UTC) - timedelta(minutes=30)
        for record in (routed(i, "a", "b", at=t0), status(i, "a", "acknowledged", t0 + timedelta(minutes=1)),
                       status(i, "b", "acknowledged", t0 + timedelta(minutes=2)),
                       status(i, "a", "resolved", t0 + timedelta(minutes=3)),
                       status(i, "b", "resolved", t0 + timedelta(minutes=4))):
            book.apply(record)
        resp = await client.get("/open311/v2/servicerequestupdates.json", params={
            "api_key": token, "start_date": (t0 - timedelta(minutes=1)).isoformat()})
        assert resp.status == 200, await resp.text()
        out["updates"] = await resp.json()
        resp = await client.get("/open311/v2/servicerequestupdates.xml", params={"api_key": token})
        assert resp.status == 200 and "<service_request_updates><request_update>" in await resp.text()
        resp = await client.get("/open311/v2/servicerequestupdates.json")
        assert resp.status in (401, 403)
        resp = await client.get(f"/open311/v2/requests/{i}.json", params={"api_key": token})
        assert (await resp.json())[0]["status_notes"] == "Résolu"

    run(settings, scenario)
    created, relayed = out["open311"], out["relay"]
    ref = reference("consent-test-key", created["service_request_id"])
    assert f"Référence de suivi : {ref}" in created["service_notice"]
    assert relayed["tracking_reference"] == reference("consent-test-key", relayed["id"])
    got = dict(consents(settings, 3))
    assert got[created["service_request_id"]].address == "paul@example.fr"  # type: ignore[union-attr]
    desk = got[relayed["id"]]
    assert desk is not None and desk.on_behalf_of_relay and desk.address == "accueil@mairie-montveille.fr"
    # Two bodies acknowledging and resolving: one update each, not one per body.
    assert [(u["status"], u["external_status_code"]) for u in out["updates"]] == [
        ("open", "transmitted"), ("investigating", "acknowledged"), ("fixed", "resolved")]
    assert out["updates"][-1]["description"] == "Résolu" and out["updates"][0]["update_id"].endswith("-1")


def test_file_import_consents(kafka: Any, tmp_path: Any) -> None:
    from veille.producers.files import import_file

    s = isolated_settings(kafka.settings, "consentfile")
    ids = [str(uuid.uuid4()) for _ in range(3)]
    jsonl = tmp_path / "journal.jsonl"
    jsonl.write_text("\n".join(__import__("json").dumps(incident(id=i, notify=n)) for i, n in [
        (ids[0], {"channel": "email", "address": "anne@example.fr"}),
        (ids[1], {"channel": "email", "address": "nope"}),  # refused: nothing published for it
        (ids[2], None)]) + "\n")
    csv = tmp_path / "registre.csv"
    csv.write_text("municipality;category;severity;occurred_at;notify_channel;notify_address;"
                   "notify_on_behalf_of_relay\n35401;graffiti;minor;2026-12-06T09:00;email;"
                   "accueil@mairie-montveille.fr;oui\n")
    writer = ConsentWriter(s, "test-import-consents")
    with Publisher(s, client_id="test-import", known_municipalities={"35401"}) as publisher:
        first = import_file(jsonl, publisher, consents=writer, notify=NOTIFY)
        second = import_file(csv, publisher, consents=writer, notify=NOTIFY)
        without = import_file(jsonl, publisher)  # a caller that takes no consents refuses them
    writer.close()
    assert (first.ok, first.consents, first.failed_lines) == (2, 1, [2])
    assert first.failures[0].field == "notify.address"
    assert (second.ok, second.consents) == (1, 1)
    assert without.failed_lines == [1, 2] and without.failures[0].field == "notify"
    got = dict(consents(s, 2))
    assert got[ids[0]].address == "anne@example.fr"  # type: ignore[union-attr]
    (desk,) = [c for k, c in got.items() if k != ids[0]]
    assert desk is not None and desk.on_behalf_of_relay
    assert desk.reference == reference("consent-test-key", desk.incident_id)
