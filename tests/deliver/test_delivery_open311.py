"""The Open311 client against a small real GeoReport v2 server (aiohttp), written from the
specification's examples: POST and GET requests.json, tokens, errors, and mySociety's
servicerequestupdates extension."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from aiohttp import web
from deliver_helpers import KEY, GeoReport, dispatch, serve, settings

from veille.deliver.config import Open311Delivery
from veille.deliver.open311_client import Open311Client, Open311Error, veille_status
from veille.deliver.settings import DeliverySettings
from veille.deliver.ssrf import DestinationRefused
from veille.schemas.models import DeliveryMethod, DeliveryOutcome, IncidentStatus

T = TypeVar("T")

def _config(base: str, **over: Any) -> Open311Delivery:
    return Open311Delivery.model_validate({
        "base_url": base + "/open311/v2/", "api_key": {"env": "VEILLE_TEST_O311_KEY"},
        "service_codes": {"damaged_road": "VOI-02", "broken_streetlight": "EP-01"},
        "request_updates": True, **over})


def _run(server: GeoReport, scenario: Callable[[Open311Client], Awaitable[T]],
         s: DeliverySettings | None = None, **config: Any) -> T:
    async def main() -> T:
        async with serve(server.app()) as base:
            client = Open311Client(_config(base, **config), s or settings())
            try:
                return await scenario(client)
            finally:
                await client.close()

    return asyncio.run(main())


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEILLE_TEST_O311_KEY", KEY)


def test_a_dispatch_becomes_a_service_request_and_its_status_is_read_back() -> None:
    server, d = GeoReport(), dispatch()

    async def scenario(client: Open311Client) -> None:
        attempt = await client.deliver(d)
        assert attempt.outcome is DeliveryOutcome.delivered and attempt.method is DeliveryMethod.open311
        assert attempt.status_code == 201 and attempt.reference == "638344"
        assert attempt.reply == "service_request_id=638344"
        (status,) = await client.statuses([attempt.reference])
        assert status.status == "open" and status.veille_status is IncidentStatus.acknowledged
        server.requests["638344"].update(status="closed", status_notes="Rebouché",
                                         updated_datetime="2010-04-16T09:00:00-08:00")
        (status,) = await client.statuses(["638344"])
        assert status.veille_status is IncidentStatus.resolved and status.status_notes == "Rebouché"
        assert status.updated_datetime == datetime(2010, 4, 16, 17, 0, tzinfo=UTC)
        assert await client.statuses([]) == []

    _run(server, scenario)
    (form,) = server.posted
    assert form["api_key"] == KEY and form["service_code"] == "VOI-02"
    assert form["attribute[veille_dispatch_id]"] == str(d.id)
    assert (form["lat"], form["long"]) == ("48.1500000", "-1.7002000")
    assert form["address_string"] == "12 rue de la Veille"
    assert form["description"].startswith("Nid-de-poule profond devant l'école")
    assert f"[Veille {d.id.hex[:4].upper()}-{d.id.hex[4:8].upper()}, gravité : Danger]" in form["description"]
    assert not {"email", "phone", "first_name"} & set(form)  # contact not configured


def test_the_contact_goes_only_where_configured() -> None:
    server = GeoReport()
    _run(server, lambda c: c.deliver(dispatch()), include_reporter_contact=True)
    form = server.posted[0]
    assert (form["first_name"], form["email"], form["phone"]) == ("Jeanne Martin", "jeanne@example.fr",
                                                                   "0611223344")


def test_a_token_answer_is_resolved_later() -> None:
    server = GeoReport(token_mode=True)

    async def scenario(client: Open311Client) -> None:
        attempt = await client.deliver(dispatch())
        assert attempt.delivered and attempt.reference == "token:tok638344"
        assert await client.resolve_token("tok638344") == "638344"
        assert await client.resolve_token("tok-unknown") is None

    _run(server, scenario)


def test_mysociety_updates_map_to_our_statuses() -> None:
    server = GeoReport()
    t0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    for i, status in enumerate(("IN_PROGRESS", "fixed", "not_councils_responsibility", "some_local_status")):
        server.updates.append({"update_id": 100 + i, "service_request_id": 638344, "status": status,
                               "updated_datetime": (t0 + timedelta(hours=i)).isoformat(),
                               "description": "", "media_url": ""})

    async def scenario(client: Open311Client) -> None:
        updates = await client.updates(t0, t0 + timedelta(hours=2, minutes=30))
        assert updates is not None
        assert [(u.update_id, u.service_request_id, u.veille_status) for u in updates] == [
            ("100", "638344", IncidentStatus.on_site), ("101", "638344", IncidentStatus.resolved),
            ("102", "638344", IncidentStatus.rejected)]
        everything = await client.updates(t0, t0 + timedelta(days=1))
        assert everything is not None and everything[-1].veille_status is None  # unknown: ignored

    _run(server, scenario)


def test_updates_are_none_where_not_offered_or_not_configured() -> None:
    now = datetime.now(UTC)
    assert _run(GeoReport(offers_updates=False), lambda c: c.updates(now - timedelta(hours=1), now)) is None
    server = GeoReport()
    assert _run(server, lambda c: c.updates(now, now), request_updates=False) is None


@pytest.mark.parametrize(("server", "config", "outcome", "status", "reply"), [
    (GeoReport(services=frozenset({"EP-01"})), {}, DeliveryOutcome.failed, 404,
     "404: service_code VOI-02 not found"),
    (GeoReport(fail_with=500), {}, DeliveryOutcome.retry, 500, "HTTP 500"),
    (GeoReport(fail_with=503), {}, DeliveryOutcome.retry, 503, "HTTP 503"),
    (GeoReport(fail_with=410), {}, DeliveryOutcome.disabled, 410, "HTTP 410"),
])
def test_refusals_and_failures(server: GeoReport, config: dict[str, Any], outcome: DeliveryOutcome,
                               status: int, reply: str) -> None:
    attempt = _run(server, lambda c: c.deliver(dispatch()), **config)
    assert attempt.outcome is outcome and attempt.status_code == status
    assert attempt.reply and reply in attempt.reply and attempt.reference is None


def test_a_wrong_api_key_is_refused_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEILLE_TEST_O311_KEY", "wrong-key-123")
    attempt = _run(GeoReport(), lambda c: c.deliver(dispatch()))
    assert attempt.outcome is DeliveryOutcome.failed and attempt.status_code == 403
    assert attempt.reply == "HTTP 403: 403: Invalid api_key received -- can't proceed with create_request."
    assert "wrong-key-123" not in attempt.model_dump_json()


def test_a_category_without_a_service_code_is_not_sent() -> None:
    server = GeoReport()
    attempt = _run(server, lambda c: c.deliver(dispatch(category="flood")))
    assert attempt.outcome is DeliveryOutcome.failed and attempt.reply == "no service_code for category flood"
    assert server.posted == []
    attempt = _run(server, lambda c: c.deliver(dispatch(category="flood")), default_service_code="EP-01")
    assert attempt.delivered and server.posted[0]["service_code"] == "EP-01"


def test_the_endpoint_is_behind_the_ssrf_guard() -> None:
    server = GeoReport()
    attempt = _run(server, lambda c: c.deliver(dispatch()), settings(allowed_networks=""))
    assert attempt.outcome is DeliveryOutcome.failed and attempt.reply and "(SSRF)" in attempt.reply
    assert server.posted == []
    with pytest.raises(DestinationRefused, match="SSRF"):
        _run(server, lambda c: c.statuses(["1"]), settings(allowed_networks=""))


def test_a_broken_answer_to_a_read_is_an_error() -> None:
    async def scenario(client: Open311Client) -> None:
        with pytest.raises(Open311Error, match="HTTP 404"):
            await client.statuses(["1"])

    async def main() -> None:
        app = web.Application()  # no route: every read is 404
        async with serve(app) as base:
            client = Open311Client(_config(base), settings())
            try:
                await scenario(client)
            finally:
                await client.close()

    asyncio.run(main())


@pytest.mark.parametrize(("remote", "ours"), [
    ("open", IncidentStatus.acknowledged), ("closed", IncidentStatus.resolved),
    ("OPEN", IncidentStatus.acknowledged),
    ("investigating", IncidentStatus.acknowledged), ("action scheduled", IncidentStatus.acknowledged),
    ("in_progress", IncidentStatus.on_site), ("FIXED", IncidentStatus.resolved),
    ("duplicate", IncidentStatus.rejected), ("NO_FURTHER_ACTION", IncidentStatus.rejected),
    ("internal_referral", IncidentStatus.rejected), ("whatever", None),
])
def test_status_map(remote: str, ours: IncidentStatus | None) -> None:
    assert veille_status(remote) is ours
