"""The residents' messages (texts, headers), references, unsubscribe links and the SMS adapter
against a local HTTP server playing the gateway."""

from __future__ import annotations

import asyncio
import uuid
from email import message_from_bytes
from email.message import EmailMessage
from typing import Any

import pytest
from aiohttp import web

from veille.notify import messages
from veille.notify.changes import Change
from veille.notify.links import UnsubscribeLinks
from veille.notify.messages import Notice
from veille.notify.reference import normalise, reference
from veille.notify.settings import NotifySettings
from veille.notify.sms import SmsGateway, normalise_phone
from veille.schemas.models import DeliveryOutcome


def notice(change: Change = Change.acknowledged, **over: Any) -> Notice:
    data: dict[str, Any] = {
        "incident_id": uuid.UUID("6f1c2a34-0000-4000-8000-000000000001"), "reference": "7KQ2-M9XD-4RTA-HV3E",
        "change": change, "generation": 1, "category_label": "Éclairage public en panne",
        "municipality_name": "Montveille", "tracking_url": "https://veille.example.fr/suivi/7KQ2-M9XD-4RTA-HV3E",
        "unsubscribe_url": "https://veille.example.fr/suivi/7KQ2-M9XD-4RTA-HV3E/desabonnement/tok"}
    data.update(over)
    return Notice(**data)


def parts(msg: EmailMessage) -> tuple[str, str]:
    parsed = message_from_bytes(msg.as_bytes())
    texts = [bytes(p.get_payload(decode=True)).decode() for p in parsed.walk()
             if p.get_content_maintype() == "text"]
    return texts[0], texts[1]


@pytest.mark.parametrize("change", list(Change))
def test_every_change_has_a_french_email_with_reference_and_links(change: Change) -> None:
    n = notice(change)
    msg = messages.email(n, to="jeanne@example.fr", sender="Veille <suivi@veille.example.fr>")
    text, html = parts(msg)
    assert msg["Subject"] == f"Votre signalement 7KQ2-M9XD-4RTA-HV3E : {messages.HEADLINES[change]}"
    assert msg["Content-Language"] == "fr" and msg["Auto-Submitted"] == "auto-generated"
    assert msg["List-Unsubscribe"] == f"<{n.unsubscribe_url}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Message-ID"] == f"<notify-{n.incident_id}-{change.value}-1@veille.example.fr>"
    for body in (text, html):
        assert messages.SENTENCES[change].split(":")[0].replace("'", "&#39;" if body is html else "'") in body
        assert n.reference in body and n.tracking_url in body and n.unsubscribe_url in body
        assert "Montveille" in body and "Éclairage public en panne" in body
    assert text.startswith("Bonjour,\n\n")


def test_acknowledged_text_exactly() -> None:
    text, _ = parts(messages.email(notice(), to="a@example.fr", sender="s@example.fr"))
    assert text.splitlines()[:7] == [
        "Bonjour,", "", "Le service compétent a pris en compte votre signalement.", "",
        "Référence : 7KQ2-M9XD-4RTA-HV3E", "Quoi : Éclairage public en panne", "Où : Montveille"]


def test_relay_is_told_why_and_sms_is_short() -> None:
    text, _ = parts(messages.email(notice(on_behalf_of_relay=True), to="a@example.fr", sender="s@example.fr"))
    assert messages.RELAY_NOTE in text
    sms = messages.sms(notice(Change.resolved))
    assert sms.startswith("Veille : votre signalement 7KQ2-M9XD-4RTA-HV3E (Éclairage public en panne, "
                          "Montveille) est résolu. Suivi : https://veille.example.fr/suivi/")
    assert len(sms) <= messages.SMS_MAX


def test_references_are_keyed_unguessable_and_forgiving() -> None:
    i = uuid.uuid4()
    ref = reference("key-1", i)
    assert normalise(ref) == ref and normalise(ref.lower().replace("-", " ")) == ref
    assert ref != reference("key-2", i) and ref != reference("key-1", uuid.uuid4())
    assert str(i) not in ref and normalise("0000") is None and normalise("not a ref at all!") is None
    # 80 bits, Crockford base32: no I, L, O, U anywhere.
    refs = {reference("k", uuid.UUID(int=n)) for n in range(2000)}
    assert len(refs) == 2000 and not any(set(r) & set("ILOU") for r in refs)


def test_unsubscribe_links_verify_only_what_was_signed() -> None:
    links = UnsubscribeLinks("k", "https://veille.example.fr/")
    i = uuid.uuid4()
    url = links.url("7KQ2-M9XD-4RTA-HV3E", i)
    token = url.rsplit("/", 1)[1]
    assert url.startswith("https://veille.example.fr/suivi/7KQ2-M9XD-4RTA-HV3E/desabonnement/")
    assert links.verify(token, i) and str(i) not in url and i.hex not in url
    assert not links.verify(token[:-2], i) and not links.verify("x" + token, i)
    assert not links.verify(token, uuid.uuid4())
    assert not UnsubscribeLinks("other", "https://x").verify(token, i)


def test_phone_numbers() -> None:
    assert normalise_phone("06 12 34 56 78") == "+33612345678"
    assert normalise_phone("0033 6 12 34 56 78") == "+33612345678"
    assert normalise_phone("+44 20 7946 0958") == "+442079460958"
    assert normalise_phone("12") is None and normalise_phone("jeanne@example.fr") is None


def test_sms_gateway_adapter_against_a_local_gateway() -> None:
    received: list[tuple[dict[str, Any], dict[str, str]]] = []
    answers = [503, 202, 400]

    async def handle(request: web.Request) -> web.Response:
        received.append((await request.json(), dict(request.headers)))
        return web.json_response({"id": "m1"}, status=answers[len(received) - 1])

    async def scenario() -> list[tuple[DeliveryOutcome, str]]:
        app = web.Application()
        app.router.add_post("/sms", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        gateway = SmsGateway(NotifySettings(sms_url=f"http://127.0.0.1:{port}/sms",
                                            sms_auth_header="X-Api-Key",
                                            sms_auth_value="s3cret", sms_sender="MAIRIE"))
        try:
            return [await gateway.send("+33612345678", "Bonjour", "key-1") for _ in range(3)]
        finally:
            await runner.cleanup()

    outcomes = asyncio.run(scenario())
    assert [o for o, _ in outcomes] == [DeliveryOutcome.retry, DeliveryOutcome.delivered,
                                        DeliveryOutcome.failed]
    body, headers = received[1]
    assert body == {"to": "+33612345678", "from": "MAIRIE", "text": "Bonjour", "message_key": "key-1"}
    assert headers["X-Api-Key"] == "s3cret" and headers["Idempotency-Key"] == "key-1"


def test_sms_gateway_down_is_retried() -> None:
    gateway = SmsGateway(NotifySettings(sms_url="http://127.0.0.1:9/sms", sms_timeout_seconds=2))
    outcome, detail = asyncio.run(gateway.send("+33612345678", "x", "k"))
    assert outcome is DeliveryOutcome.retry and "Error" in detail
