"""Residents hear back, on the real broker with the real router, intake and notifier processes
and a real SMTP server: the issue's sequence, nothing without consent, a working unsubscribe
link, the contact gone from the consent topic after the retention, a tracking page without
personal data."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from hub_helpers import HubProcess, committed_offsets, hub_settings, read_topics, wait_for
from notify_helpers import free_port, routed, status

from veille.config import Settings
from veille.local.receivers import Mailbox
from veille.producers.sdk import Publisher
from veille.schemas.models import EventType, RoutedIncident, ServiceKind, StatusUpdate
from veille.territory import load_territory
from veille.territory.dispatch import dispatch_id
from veille.topics import Topics

pytestmark = pytest.mark.kafka

ADDRESS = "jeanne.martin@example.fr"
LINK = re.compile(r"https?://\S+")


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        yield box, port
    finally:
        smtp.stop()


def report(client: httpx.Client, notify: dict[str, Any] | None, **over: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "municipality": "35401", "category": "broken_streetlight", "severity": "moderate",
        "location": {"lat": 48.1502, "lon": -1.7003}, "address": "3 rue des Lavoirs",
        "occurred_at": (now - timedelta(hours=1)).isoformat(),
        "description": "Lampadaire éteint devant le n°3",
        "reporter": {"name": "Jeanne Martin", "email": ADDRESS, "phone": "0611223344"}, **over}
    if notify is not None:
        body["notify"] = notify
    resp = client.post("/v1/incidents", json=body)
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


def agency_status(settings: Settings, incident_id: str, agency: str, service: str, value: str,
                  **over: Any) -> None:
    """An agency's status update, with the dispatch id the router gave it, through the router."""
    key = settings.dispatch_key.get_secret_value().encode()
    did = dispatch_id(key, EventType.incident, incident_id, agency, ServiceKind(service))
    with Publisher(settings, client_id="test-notify-agency") as pub:
        pub.publish_status(StatusUpdate(id=uuid.uuid4(), incident_id=uuid.UUID(incident_id), agency_id=agency,
                                        dispatch_id=did, status=value, at=datetime.now(UTC), **over))


def routed_dispatch(settings: Settings, incident_id: str) -> tuple[str, str]:
    out = read_topics(settings, [Topics(settings.topic_prefix).routed],
                      until=lambda got: any(str(v.value.get("id")) == incident_id for _, v in got),
                      timeout=60)
    record = next(v.value for _, v in out if str(v.value.get("id")) == incident_id)
    first = record["dispatches"][0]
    return first["agency_id"], first["service"]


def as_router(settings: Settings, *records: RoutedIncident | StatusUpdate) -> None:
    """What the router writes to <prefix>.routed (the re-routing is another engineer's, not here yet)."""
    producer = Producer(settings.kafka_client_config())
    for record in records:
        key = record.id if isinstance(record, RoutedIncident) else record.incident_id
        producer.produce(Topics(settings.topic_prefix).routed, key=key.bytes, value=record.encode())
    assert producer.flush(10) == 0


def latest_consents(settings: Settings) -> dict[str, bytes | None]:
    topic = Topics(settings.topic_prefix).notify_consent
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"t-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        latest: dict[str, bytes | None] = {}
        seen = {p: 0 for p in parts}
        deadline = time.monotonic() + 30
        while any(seen[p] < ends[p] for p in parts) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            latest[bytes(msg.key() or b"").decode()] = msg.value()
            seen[msg.partition() or 0] = (msg.offset() or 0) + 1
        return latest
    finally:
        consumer.close()


def caught_up(settings: Settings) -> bool:
    """The notifier committed everything on the routed topic: it has seen every record."""
    topic = Topics(settings.topic_prefix).routed
    committed = committed_offsets(settings, f"{settings.topic_prefix}.notify", [topic])
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"t-{uuid.uuid4()}"})
    try:
        ends = {(topic, p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for (_, p) in committed}
    finally:
        consumer.close()
    return all(committed[tp] >= end for tp, end in ends.items() if end > 0)


def mails_to(box: Mailbox, address: str) -> list[Any]:
    return [m for _, rcpt, m in box.messages if address in rcpt]


def text_of(mail: Any) -> str:
    return str(mail.get_body(preferencelist=("plain",)).get_content())


def test_a_resident_hears_each_change_once_and_nobody_else_hears_anything(
        kafka: Any, tmp_path: Path, mailbox: tuple[Mailbox, int]) -> None:
    box, smtp_port = mailbox
    settings = hub_settings(kafka.settings, tmp_path)
    territory = load_territory(settings.territory_dir)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    keys = {"VEILLE_NOTIFY_REFERENCE_KEY": "test-reference-key", "VEILLE_NOTIFY_LINK_KEY": "test-link-key",
            "VEILLE_NOTIFY_PUBLIC_BASE_URL": base}
    intake = HubProcess(settings, "intake", "serve", "--port", str(port), env={
        **keys, "VEILLE_INTAKE_ANONYMOUS_MUNICIPALITIES": "35401"}).start()
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    notifier = HubProcess(settings, "notify", "run", "--metrics-port", "0", env={
        **keys, "VEILLE_DELIVERY_SMTP_HOST": "127.0.0.1", "VEILLE_DELIVERY_SMTP_PORT": str(smtp_port),
        "VEILLE_DELIVERY_SMTP_SECURITY": "none", "VEILLE_NOTIFY_RETENTION_DAYS": "0",
        "VEILLE_NOTIFY_SWEEP_SECONDS": "0.5",
        "VEILLE_NOTIFY_EMAIL_SENDER": "Veille <suivi@veille.test>"}).start()
    try:
        notifier.info("notify.json")
        with httpx.Client(base_url=base, timeout=20) as client:
            wait_for(lambda: _up(client), 60, "the intake")
            # 1. Jeanne consents by e-mail; a neighbour reports without consent; Paul consents too.
            jeanne = report(client, {"channel": "email", "address": ADDRESS})
            neighbour = report(client, None, reporter={"email": "voisin@example.fr"})
            paul = report(client, {"channel": "email", "address": "paul@example.fr"}, reporter=None)
            assert re.fullmatch(r"[0-9A-Z]{4}(-[0-9A-Z]{4}){3}", jeanne["reference"])
            assert jeanne["tracking_url"] == f"{base}/suivi/{jeanne['reference']}"
            consents = latest_consents(settings)
            assert set(consents) == {jeanne["id"], paul["id"]}  # the neighbour's contact is not there
            agency, service = routed_dispatch(settings, jeanne["id"])
            for who in (jeanne, neighbour, paul):
                routed_dispatch(settings, who["id"])
            # 2. The body acknowledges Jeanne's and the neighbour's, then refuses Jeanne's as not its own.
            began = time.monotonic()
            for who in (jeanne, neighbour, paul):
                agency_status(settings, who["id"], agency, service, "acknowledged")
            wait_for(lambda: len(mails_to(box, ADDRESS)) == 1 and len(mails_to(box, "paul@example.fr")) == 1,
                     60, "the acknowledgements")
            print(f"\nacknowledgements published -> both residents' e-mails in the mailbox: "
                  f"{time.monotonic() - began:.2f}s (through the router and the notifier)")
            # kill -9 between two changes: what was told is not told again by its successor.
            notifier.kill()
            notifier.start()
            agency_status(settings, jeanne["id"], agency, service, "rejected", reason="not_competent")
            # 3. Re-routed to a second body, which resolves it (as the router will forward it).
            other = next(a for a in sorted(territory.agencies) if a != agency)
            jid = uuid.UUID(jeanne["id"])
            as_router(settings, routed(jid, other, rule="eclairage-35401+rerouted"))
            wait_for(lambda: len(mails_to(box, ADDRESS)) == 2, 60, "the re-routing")
            as_router(settings, status(jid, other, "resolved"))
            wait_for(lambda: len(mails_to(box, ADDRESS)) >= 3, 60, "the resolution")
            # 4. Paul unsubscribes from his first message: the resolution reaches nobody.
            paul_mail = text_of(mails_to(box, "paul@example.fr")[0])
            (unsubscribe,) = [u for u in LINK.findall(paul_mail) if "/desabonnement/" in u]
            assert uuid.UUID(paul["id"]).hex not in unsubscribe and paul["id"] not in unsubscribe
            assert client.get(unsubscribe).status_code == 200  # a page with a button, nothing done yet
            resp = client.post(unsubscribe)
            assert resp.status_code == 200 and "est fait" in resp.text
            assert client.post(unsubscribe.replace("/desabonnement/", "/desabonnement/x")).status_code == 403
            for who in (neighbour, paul):
                agency_status(settings, who["id"], agency, service, "resolved")
            wait_for(lambda: routed_count(settings) >= 11, 60, "every status through the router")
            wait_for(lambda: caught_up(settings), 60, "the notifier to have read everything")
            # Exactly the expected sequence, French, for Jeanne; Paul only his acknowledgement.
            subjects = [m["Subject"] for m in mails_to(box, ADDRESS)]
            ref = jeanne["reference"]
            assert subjects == [f"Votre signalement {ref} : pris en compte",
                                f"Votre signalement {ref} : confié à un autre service",
                                f"Votre signalement {ref} : résolu"]
            assert len(mails_to(box, "paul@example.fr")) == 1
            assert not mails_to(box, "voisin@example.fr") and len(box.messages) == 4
            # 5. The tracking link of the last message works and shows no personal data.
            last = text_of(mails_to(box, ADDRESS)[-1])
            assert "Le service compétent indique que le problème signalé est résolu." in last
            (tracking,) = [u for u in LINK.findall(last) if "/suivi/" in u and "/desabonnement/" not in u]
            page = client.get(tracking)
            assert page.status_code == 200 and ref in page.text
            for step in ("Signalement reçu", "Transmis au service compétent", "Pris en compte par le service",
                         "Confié à un autre service", "Résolu"):
                assert step in page.text, step
            for private in (ADDRESS, "Jeanne", "Martin", "0611223344", "Lavoirs", "Lampadaire éteint",
                            jeanne["id"], "48.15", "-1.70"):
                assert private not in page.text, private
            assert client.get(f"{base}/suivi/{ref[:-1]}X").status_code == 404
        # 6. The retention (0 days here): Jeanne's contact leaves the consent topic by a tombstone,
        # and so did Paul's by his unsubscribe.
        wait_for(lambda: latest_consents(settings).get(jeanne["id"], b"") is None, 60, "the tombstone")
        assert latest_consents(settings)[paul["id"]] is None
    finally:
        for proc in (notifier, router, intake):
            proc.stop()
    assert "jeanne" not in notifier.log().lower() and ADDRESS not in intake.log()
    assert "paul@" not in notifier.log() and "paul@" not in intake.log()


def routed_count(settings: Settings) -> int:
    topic = Topics(settings.topic_prefix).routed
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"t-{uuid.uuid4()}"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        consumer.close()


def _up(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def test_sms_through_the_gateway_retried_and_garbage_skipped(kafka: Any, tmp_path: Path) -> None:
    """An SMS consent: the gateway (a local aiohttp server) answers 503 once, then accepts: the
    change is told once, with one idempotency key; garbage on the routed topic is skipped."""
    import asyncio
    import threading

    from aiohttp import web

    from veille.notify.consent import ConsentWriter
    from veille.schemas.models import NotificationConsent

    received: list[tuple[dict[str, Any], str]] = []

    async def gateway(request: web.Request) -> web.Response:
        received.append((await request.json(), request.headers.get("Idempotency-Key", "")))
        if request.headers.get("X-Api-Key") != "gw-secret":
            return web.json_response({"error": "auth"}, status=401)
        return web.json_response({"id": len(received)}, status=503 if len(received) == 1 else 202)

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    app = web.Application()
    app.router.add_post("/v1/sms", gateway)
    runner = web.AppRunner(app)
    port = free_port()

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    settings = hub_settings(kafka.settings, tmp_path)
    notifier = HubProcess(settings, "notify", "run", "--metrics-port", "0", env={
        "VEILLE_NOTIFY_SMS_URL": f"http://127.0.0.1:{port}/v1/sms",
        "VEILLE_NOTIFY_SMS_AUTH_HEADER": "X-Api-Key",
        "VEILLE_NOTIFY_SMS_AUTH_VALUE": "gw-secret", "VEILLE_NOTIFY_RETRY_BASE_SECONDS": "0.2"}).start()
    try:
        notifier.info("notify.json")
        incident_id = uuid.uuid4()
        writer = ConsentWriter(settings, "test-sms-consent")
        assert writer.write(NotificationConsent(incident_id=incident_id, reference="ABCD-EFGH-JKMN-PQRS",
                                                channel="sms", address="+33612345678",
                                                consented_at=datetime.now(UTC)))
        writer.close()
        producer = Producer(settings.kafka_client_config())
        topic = Topics(settings.topic_prefix).routed
        producer.produce(topic, key=incident_id.bytes, value=b"\xc3\x01 not a routing record")
        producer.produce(topic, key=incident_id.bytes, value=routed(incident_id, "pm-35401").encode())
        producer.produce(topic, key=incident_id.bytes,
                         value=status(incident_id, "pm-35401", "acknowledged").encode())
        assert producer.flush(10) == 0
        wait_for(lambda: caught_up(settings) and len(received) >= 2, 60, "the SMS, retried once")
    finally:
        notifier.stop()
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    assert len(received) == 2  # 503, then accepted: told once
    (first, key1), (second, key2) = received
    assert first == second and key1 == key2
    assert second["to"] == "+33612345678" and second["from"] == "VEILLE"
    assert second["text"].startswith("Veille : votre signalement ABCD-EFGH-JKMN-PQRS (Éclairage public en "
                                     "panne, Montveille) est pris en compte.")
    log = notifier.log()
    assert "is not a routing record" in log and "+33612345678" not in log and "0612345678" not in log
