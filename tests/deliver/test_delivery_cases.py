"""A case's dispatches by every method (docs/grouping.md, "What bodies receive"), against real
receivers: a webhook endpoint verifying signatures, an SMTP server, a GeoReport v2 endpoint."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from deliver_helpers import KEY, GeoReport, Mailbox, Receiver, dispatch, free_port, incident, serve, settings
from jsonschema import Draft202012Validator
from test_delivery_webhook import SCHEMA, _config

from veille.deliver.config import DeliveryConfig, EmailDelivery, Open311Delivery
from veille.deliver.email import message_id
from veille.deliver.engine import Engine, Job
from veille.deliver.metrics import CASE_UPDATES
from veille.deliver.webhook import WebhookSender
from veille.schemas.models import CaseRef, CaseRole, DeliveryMethod, DeliveryReceipt, Dispatch, GeoPoint
from veille.territory.model import Agency, AgencyLevel, ServiceKind


def case_dispatches(n: int, agency: str = "mairie-35401") -> list[Dispatch]:
    """A case of ``n`` flash-flood reports as one body receives it: opened, then n-1 updates."""
    first = incident(category="flash_flood", severity="moderate")
    case_id, positions = first.id, [GeoPoint(lat=48.15 + i / 10_000, lon=-1.7) for i in range(n)]
    opened = dispatch(first, service=ServiceKind.stormwater, agency_id=agency, case=CaseRef(
        id=case_id, role=CaseRole.opened, reports=1, severity="moderate", municipalities=["35401"],
        positions=positions[:1]))
    out = [opened]
    for i in range(2, n + 1):
        report = incident(category="flash_flood", severity="severe" if i == n else "moderate",
                          municipality="35402" if i % 2 else "35401")
        out.append(dispatch(report, service=ServiceKind.stormwater, agency_id=agency, case=CaseRef(
            id=case_id, role=CaseRole.update, update_of=opened.id, reports=i,
            severity="severe" if i == n else "moderate", municipalities=["35401", "35402"],
            positions=positions[:i])))
    return out


def test_webhook_bodies_of_a_case_follow_the_schema_and_say_update(tmp_path: Path) -> None:
    receiver = Receiver()
    opened, update = case_dispatches(2)
    plain = dispatch()

    async def main() -> None:
        async with serve(receiver.app()) as base, WebhookSender(settings()) as sender:
            for d in (opened, update, plain):
                attempt = await sender.send(d, _config(base + "/hook", tmp_path))
                assert attempt.delivered, attempt

    asyncio.run(main())
    assert not receiver.refused  # every signature verified by the receiver
    validator = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
    for body in receiver.received:
        assert not list(validator.iter_errors(body)), body
        assert set(body) == set(SCHEMA["properties"])
    first, second, third = receiver.received
    assert first["case"]["role"] == "opened" and first["case"]["id"] == str(opened.event_id)
    assert second["case"] == {
        "id": str(opened.event_id), "role": "update", "update_of": str(opened.id), "reports": 2,
        "severity": "severe", "severity_label": "Danger",
        "municipalities": ["35401", "35402"],
        "positions": [{"lat": 48.15, "lon": -1.7}, {"lat": 48.1501, "lon": -1.7}]}
    assert second["dispatch_id"] == str(update.id) != second["case"]["update_of"]
    assert third["case"] is None  # a report not grouped: as before


@pytest.fixture
def mailbox() -> Any:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def test_a_case_reaches_a_body_once_by_each_method_and_updates_do_not_bury_it(
        tmp_path: Path, mailbox: tuple[Mailbox, int], monkeypatch: pytest.MonkeyPatch) -> None:
    box, port = mailbox
    receiver, georeport = Receiver(), GeoReport()
    monkeypatch.setenv("O311_KEY", KEY)
    dispatches = case_dispatches(6)
    labels = (("webhook", "sent"), ("email", "sent"), ("email", "coalesced"), ("open311", "skipped"))
    counted = {(m, o): CASE_UPDATES.labels(m, o)._value.get() for m, o in labels}
    receipts: list[DeliveryReceipt] = []
    done: list[Job] = []
    lock = threading.Lock()

    def emit(r: DeliveryReceipt) -> None:
        with lock:
            receipts.append(r)

    def finished(job: Job) -> None:
        with lock:
            done.append(job)

    async def main() -> None:
        async with serve(receiver.app()) as hook, serve(georeport.app()) as o311:
            config = DeliveryConfig(
                webhook=_config(hook + "/hook", tmp_path), email=EmailDelivery(to=("eaux@syndicat.fr",)),
                open311=Open311Delivery(base_url=o311 + "/open311/v2", api_key={"env": "O311_KEY"},
                                        service_codes={"flash_flood": "EP-01"}))
            agency = Agency(id="syndicat-eaux-veille", name="Syndicat", level=AgencyLevel.intercommunal,
                            services=frozenset({ServiceKind.stormwater}), home_municipality=None,
                            delivery=config)
            # One update e-mail per case per 1.2 s here (15 min by default).
            engine = Engine(settings(smtp_port=port, email_update_minutes=0.02), emit=emit, done=finished)
            engine.start()
            try:
                methods = {DeliveryMethod.webhook, DeliveryMethod.email, DeliveryMethod.open311}
                for i, d in enumerate(dispatches):
                    engine.submit(Job(d, agency, ("t", 0, i), set(methods)))
                    if i == 0:  # the opening first, as the topic's order gives it
                        await _until(lambda: len(box.messages) == 1)
                await _until(lambda: len(done) == len(dispatches))
            finally:
                await asyncio.get_running_loop().run_in_executor(None, engine.stop)

    asyncio.run(main())
    # Webhook: every report, the updates said to be updates of the case's dispatch.
    assert [b["case"]["role"] for b in receiver.received].count("update") == 5
    assert sorted(b["dispatch_id"] for b in receiver.received) == sorted(str(d.id) for d in dispatches)
    # E-mail: the opening, then ONE update carrying the latest count and the case's severity.
    assert len(box.messages) == 2
    (_, _, opening), (_, _, update) = box.messages
    assert opening["Subject"].startswith("[Veille] Dossier : ")
    assert update["Subject"].startswith("[Veille] Mise à jour du dossier : ")
    assert "(6 signalements liés)" in update["Subject"] and "Danger" in update["Subject"]
    assert update["In-Reply-To"] == message_id(dispatches[0].id, "veille@veille.test")
    plain = update.get_body(("plain",))
    assert plain is not None
    text = plain.get_content()
    assert "6 signalements liés" in text and "Ne le traitez pas comme une nouvelle demande" in text
    # Open311: one service request, the case's; the updates skipped with a receipt saying why.
    assert len(georeport.posted) == 1
    by = {(r.dispatch_id, r.method): r for r in receipts}
    for d in dispatches[1:]:
        assert by[(d.id, DeliveryMethod.open311)].reply.startswith("skipped: update of case")
    coalesced = [d for d in dispatches[1:] if by[(d.id, DeliveryMethod.email)].reply.startswith("coalesced:")]
    assert len(coalesced) == 4
    assert by[(dispatches[-1].id, DeliveryMethod.email)].status_code == 250
    # Counted: 5 updates by webhook, 1 e-mail standing for 5 (4 coalesced), 5 skipped by Open311.
    assert {k: CASE_UPDATES.labels(*k)._value.get() - v for k, v in counted.items()} == {
        ("webhook", "sent"): 5, ("email", "sent"): 1, ("email", "coalesced"): 4, ("open311", "skipped"): 5}
    # Every method of every dispatch has a delivered receipt: nothing left pending.
    assert {(r.dispatch_id, r.method) for r in receipts if r.outcome.value == "delivered"} == {
        (d.id, m) for d in dispatches for m in (DeliveryMethod.webhook, DeliveryMethod.email,
                                                DeliveryMethod.open311)}


async def _until(predicate: Any, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.05)
