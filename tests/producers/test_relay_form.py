"""The relays' form over HTTP (aiohttp in this process) against the real broker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from producer_helpers import consume, isolated_settings, message_count
from relay_helpers import IN_35406, Client, accounts, form_tokens, log_in, report, run

from veille.config import Settings
from veille.producers.open311_requests import RequestBook
from veille.schemas.models import (
    Channel,
    DispatchTarget,
    Incident,
    IncidentStatus,
    RoutedIncident,
    ServiceKind,
    StatusUpdate,
)
from veille.topics import Topics

JSON = {"Accept": "application/json"}


@pytest.fixture(scope="module")
def base(kafka: Any) -> Settings:
    return kafka.settings


def test_login_session_and_csrf_are_required(base: Settings) -> None:
    settings = isolated_settings(base, "relaylogin")
    store = accounts(settings)
    account, password = store.issue("Accueil", kind="town_hall_desk", municipalities=["35401"])

    async def scenario(client: Client, book: RequestBook) -> None:
        resp = await client.get("/relais/", allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/relais/connexion"
        resp = await client.post("/relais/connexion", data={"login": account.login, "password": password})
        assert resp.status == 400 and "La page a expiré" in await resp.text()
        resp = await log_in(client, account.login, "wrong-password")
        assert resp.status == 403 and "Identifiant ou mot de passe incorrect" in await resp.text()
        resp = await log_in(client, account.login, password)
        assert resp.status == 303 and resp.headers["Location"] == "/relais/"
        cookie = resp.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and password not in cookie
        csrf, report_id = await form_tokens(client)
        resp = await client.post("/relais/signalements", data=report("forged", report_id), headers=JSON)
        assert resp.status == 400 and "csrf_token" in (await resp.json())["errors"]
        # Rotating the password ends the sessions opened with the old one.
        store.rotate(account.id)
        resp = await client.post("/relais/signalements", data=report(csrf, report_id), headers=JSON)
        assert resp.status == 401
        resp = await client.get("/relais/", allow_redirects=False)
        assert resp.status == 303

    run(settings, store, scenario)
    assert message_count(settings, [Topics(settings.topic_prefix).intake("35401")]) == 0


def test_report_published_on_the_relay_channel_then_status(base: Settings) -> None:
    settings = isolated_settings(base, "relaysend")
    topic = Topics(settings.topic_prefix).intake("35401")
    store = accounts(settings)
    account, password = store.issue("Standard", kind="phone", municipalities=["35401"])
    answers: list[dict[str, Any]] = []

    async def scenario(client: Client, book: RequestBook) -> None:
        assert (await log_in(client, account.login, password)).status == 303
        csrf, report_id = await form_tokens(client)
        data = report(csrf, report_id, contact_name="Anne Martin", contact_phone="06 12 34 56 78",
                      consent="y", address="12 rue des Lilas")
        resp = await client.post("/relais/signalements", data=data, headers=JSON)
        assert resp.status == 201, await resp.text()
        answers.append(await resp.json())
        # The offline queue re-sends the same report: accepted, same reference, same bytes.
        resp = await client.post("/relais/signalements", data=data, headers=JSON)
        assert resp.status == 201 and (await resp.json())["reference"] == answers[0]["reference"]
        # Later, the router's record and an agency's status update reach the read model.
        now = datetime.now(UTC)
        book.apply(RoutedIncident(
            id=uuid.UUID(report_id), municipality="35401", category="broken_streetlight", severity="moderate",
            channel=Channel.phone, occurred_at=now, reported_at=now, routed_at=now,
            dispatches=[DispatchTarget(agency_id="st-35401", service=ServiceKind.public_works, rule="r",
                                       cross_boundary=False)]))
        book.apply(StatusUpdate(id=uuid.uuid4(), incident_id=uuid.UUID(report_id), agency_id="st-35401",
                                status=IncidentStatus.dispatched, at=now + timedelta(seconds=1)))
        resp = await client.get(f"/relais/signalements/{report_id}")
        assert resp.status == 200 and (await resp.json())["label"] == "Transmis au service compétent"
        resp = await client.get("/relais/suivi", params={"reference": answers[0]["reference"]})
        page = await resp.text()
        assert resp.status == 200 and "Transmis au service compétent" in page
        resp = await client.get("/relais/suivi", params={"reference": "0000-0000"})
        assert resp.status == 404 and "Aucun signalement" in await resp.text()

    run(settings, store, scenario)
    answer = answers[0]
    first, second = consume(settings, [topic], 2)
    assert first.value() == second.value()  # byte-identical: the router drops the re-send
    got = Incident.decode(first.value())
    short = answer["id"].replace("-", "")[:8].upper()
    assert str(got.id) == answer["id"] and answer["reference"] == f"{short[:4]}-{short[4:]}"
    assert got.channel == Channel.phone and got.municipality == "35401"
    assert got.reporter is not None and got.reporter.phone == "06 12 34 56 78"
    assert got.location is not None and got.address == "12 rue des Lilas"


def test_field_errors_in_french_next_to_each_field_nothing_sent(base: Settings) -> None:
    settings = isolated_settings(base, "relaybad")
    store = accounts(settings)
    account, password = store.issue("Accueil", kind="town_hall_desk", municipalities=["35401"])

    async def scenario(client: Client, book: RequestBook) -> None:
        await log_in(client, account.login, password)
        csrf, report_id = await form_tokens(client)
        future = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
        bad = report(csrf, report_id, category="meteor", description="", occurred_at=future,
                     contact_email="pas-un-courriel", lat="95", lon="-1.7")
        resp = await client.post("/relais/signalements", data=bad, headers=JSON)
        assert resp.status == 422
        errors = (await resp.json())["errors"]
        assert errors == {"category": "Choisissez un type de problème dans la liste.",
                          "description": "Ce champ est obligatoire.",
                          "occurred_at": "Cette date est dans le futur.",
                          "place": "Le point placé sur la carte n'est pas valable.",
                          "contact_email":
                              "Indiquez une adresse de courriel valable, par exemple nom@exemple.fr.",
                          "consent": "Sans l'accord de l'habitant, laissez ses coordonnées vides."}
        # Without the page's script: the same page again, each message next to its field.
        resp = await client.post("/relais/signalements", data=bad)
        page = await resp.text()
        assert resp.status == 422
        assert 'id="description-error" data-error-for="description">Ce champ est obligatoire.' in page
        assert 'aria-describedby="description-hint description-error"' in page
        assert 'aria-invalid="true"' in page
        assert 'value="pas-un-courriel"' in page  # what was typed is kept

    run(settings, store, scenario)
    assert message_count(settings, [Topics(settings.topic_prefix).intake(m) for m in ("35401", "35406")]) == 0


def test_a_relay_cannot_report_for_another_municipality(base: Settings) -> None:
    settings = isolated_settings(base, "relayspoof")
    store = accounts(settings)
    account, password = store.issue("Référent", kind="neighbourhood_representative", municipalities=["35401"])

    async def scenario(client: Client, book: RequestBook) -> None:
        await log_in(client, account.login, password)
        csrf, report_id = await form_tokens(client)
        resp = await client.post("/relais/signalements", headers=JSON,
                                 data=report(csrf, report_id, municipality="35406", lat="", lon=""))
        body = await resp.json()
        assert resp.status == 403 and body["code"] == "municipality_mismatch"
        assert body["errors"] == {"municipality": "Vous ne pouvez signaler que pour votre commune."}
        resp = await client.post("/relais/signalements", headers=JSON, data=report(
            csrf, report_id, lat=str(IN_35406[0]), lon=str(IN_35406[1])))
        body = await resp.json()
        assert resp.status == 403 and "Trémel-en-Lande" in body["errors"]["place"]
        resp = await client.post("/relais/signalements", headers=JSON, data=report(
            csrf, report_id, municipality="35406", lat=str(IN_35406[0]), lon=str(IN_35406[1])))
        assert resp.status == 403

    run(settings, store, scenario)
    assert message_count(settings, [Topics(settings.topic_prefix).intake(m) for m in ("35401", "35406")]) == 0


def test_password_guessing_is_throttled_per_address(base: Settings) -> None:
    settings = isolated_settings(base, "relaythrottle")
    store = accounts(settings)
    account, password = store.issue("Accueil", kind="town_hall_desk", municipalities=["35401"])

    async def scenario(client: Client, book: RequestBook) -> None:
        statuses = [(await log_in(client, account.login, f"guess-{i}")).status for i in range(10)]
        assert statuses == [403] * 10
        resp = await log_in(client, account.login, password)  # even the right one must wait now
        assert resp.status == 429 and "Attendez une minute" in await resp.text()

    run(settings, store, scenario)
