"""E-mail delivery against a real SMTP server (aiosmtpd) started by the test, whose mailbox the
tests read: headers, plain-text and HTML parts, Message-ID, SMTP replies, STARTTLS and login."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from deliver_helpers import Mailbox, dispatch, free_port, incident, self_signed, settings

from veille.deliver.config import EmailDelivery
from veille.deliver.email import EmailSender, build_message, message_id
from veille.deliver.outcome import Attempt
from veille.deliver.settings import DeliverySettings
from veille.deliver.view import view
from veille.schemas.models import DeliveryMethod, DeliveryOutcome, Dispatch

TO = EmailDelivery(to=("voirie@montveille.fr", "astreinte@montveille.fr"))
RESPONSE = "https://veille.montveille.fr/reponse/4b1c/abc.def"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def _deliver(port: int, d: Dispatch, config: EmailDelivery = TO, s: DeliverySettings | None = None,
             **kwargs: Any) -> Attempt:
    sender = EmailSender(s or settings(smtp_port=port))
    return asyncio.run(sender.deliver(d, config, **kwargs))


def _parts(msg: EmailMessage) -> tuple[str, str]:
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def test_a_dispatch_arrives_in_the_mailbox_with_what_where_when(mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    d = dispatch()
    deadline = datetime(2026, 3, 12, 17, 30, tzinfo=UTC)
    attempt = _deliver(port, d, response_url=RESPONSE, deadline=deadline, municipality_name="Montveille",
                       link_expires=datetime(2026, 3, 19, 12, 0, tzinfo=UTC))
    assert attempt.outcome is DeliveryOutcome.delivered and attempt.method is DeliveryMethod.email
    assert attempt.status_code == 250 and attempt.reply == "250 Message accepted for delivery"
    ((mail_from, rcpt, msg),) = box.messages
    assert mail_from == "veille@veille.test" and rcpt == list(TO.to)
    assert msg["Message-ID"] == f"<dispatch-{d.id}@veille.test>"
    assert msg["X-Veille-Dispatch-Id"] == str(d.id) and msg["Auto-Submitted"] == "auto-generated"
    assert msg["To"] == "voirie@montveille.fr, astreinte@montveille.fr"
    ref = f"{d.id.hex[:4].upper()}-{d.id.hex[4:8].upper()}"
    assert msg["Subject"] == f"[Veille] Chaussée dégradée \u2013 Danger \u2013 Montveille (réf. {ref})"
    text, html = _parts(msg)
    inc = incident()
    for needle in ("Chaussée dégradée", "Gravité : Danger", inc.description, "Montveille (35401)",
                   "12 rue de la Veille", "48.15000, -1.70020",
                   "https://www.openstreetmap.org/?mlat=48.150000&mlon=-1.700200#map=18/48.150000/-1.700200",
                   "À traiter avant le 12/03/2026 à 18:30", RESPONSE, "valable jusqu'au 19/03/2026 à 13:00",
                   "Services techniques", str(d.id)):
        assert needle in text, needle
    assert "Signalé le" in text and "Survenu le" in text and "Transmis le" in text
    assert "Jeanne" not in text and "0611223344" not in text  # contact not configured
    assert f'<a href="{RESPONSE}">' in html and "nid-de-poule profond".lower() in html.lower()
    assert 'lang="fr"' in html and "À traiter avant le 12/03/2026 à 18:30" in html


def test_every_attempt_of_a_dispatch_has_the_same_message_id(mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    d = dispatch()
    assert _deliver(port, d).delivered and _deliver(port, d).delivered
    first, second = (m[2]["Message-ID"] for m in box.messages)
    assert first == second == message_id(d.id, "v@veille.test")
    other = dispatch()
    assert _deliver(port, other).delivered
    assert box.messages[2][2]["Message-ID"] != box.messages[0][2]["Message-ID"]


def test_html_is_escaped_and_headers_cannot_be_injected(mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    hostile = incident(description='<script>alert("x")</script> <a href="http://evil">ici</a>',
                       address="1 rue <b>X</b>\r\nBcc: everyone@example.fr")
    assert _deliver(port, dispatch(hostile)).delivered
    ((_, rcpt, msg),) = box.messages
    assert rcpt == list(TO.to) and msg["Bcc"] is None
    text, html = _parts(msg)
    assert "<script>" not in html and "&lt;script&gt;" in html and 'href="http://evil"' not in html
    assert "<b>X</b>" not in html and "&lt;b&gt;X&lt;/b&gt;" in html
    assert '<script>alert("x")</script>' in text  # plain text is shown as text by mail clients


def test_the_reporter_contact_only_when_configured(mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    config = EmailDelivery(to=("voirie@montveille.fr",), include_reporter_contact=True)
    assert _deliver(port, dispatch(), config).delivered
    text, html = _parts(box.messages[0][2])
    for needle in ("Jeanne Martin", "0611223344", "jeanne@example.fr", "donnée personnelle"):
        assert needle in text and needle.split()[0] in html


def test_an_alert_and_an_undecodable_payload_still_make_a_message() -> None:
    d = dispatch(payload=b"\x00\x00\x00\x00\x07not ours")
    msg = build_message(view(d), to=["a@b.fr"], sender="Veille <v@veille.test>", map_url="x")
    text, _ = _parts(msg)
    assert "Chaussée dégradée" in text and "Coordonnées" not in text and "35401" in text


def test_a_refused_recipient_is_failed_a_full_mailbox_is_retried(mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    box.refuse = {"voirie@montveille.fr": "550 5.1.1 No such user",
                  "astreinte@montveille.fr": "550 5.1.1 Nope"}
    attempt = _deliver(port, dispatch())
    assert attempt.outcome is DeliveryOutcome.failed and attempt.status_code == 550
    assert attempt.reply and "voirie@montveille.fr: 550 5.1.1 No such user" in attempt.reply
    box.refuse = {"voirie@montveille.fr": "452 4.2.2 Mailbox full", "astreinte@montveille.fr": "550 Nope"}
    assert _deliver(port, dispatch()).outcome is DeliveryOutcome.retry
    box.refuse = {"astreinte@montveille.fr": "550 5.1.1 Nope"}  # one of two accepted: delivered
    attempt = _deliver(port, dispatch())
    assert attempt.delivered and attempt.reply and "refused: astreinte@montveille.fr: 550" in attempt.reply
    assert len(box.messages) == 1


def test_a_relay_that_is_down_is_a_retry() -> None:
    attempt = _deliver(free_port(), dispatch())
    assert attempt.outcome is DeliveryOutcome.retry and attempt.status_code is None
    assert attempt.reply and "Connect" in attempt.reply


def test_starttls_required_but_not_offered_fails(mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    attempt = _deliver(port, dispatch(), s=settings(smtp_port=port, smtp_security="starttls"))
    assert attempt.outcome is DeliveryOutcome.failed and attempt.reply and "STARTTLS" in attempt.reply
    assert box.messages == []


def test_starttls_and_login_on_a_real_relay(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"veille", b"s3cret")
        return AuthResult(success=ok, handled=False)

    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True,
                            authenticator=authenticator, auth_required=True)
    controller.start()
    try:
        secure = {"smtp_port": port, "smtp_host": "localhost", "smtp_security": "starttls",
                  "smtp_ca_file": str(cert), "smtp_username": "veille"}
        good = _deliver(port, dispatch(), s=settings(**secure, smtp_password="s3cret"))
        assert good.delivered, good.reply
        bad = _deliver(port, dispatch(), s=settings(**secure, smtp_password="wrong"))
        assert bad.outcome is DeliveryOutcome.failed and bad.status_code == 535
        untrusted = _deliver(port, dispatch(), s=settings(**{**secure, "smtp_ca_file": ""},
                                                          smtp_password="s3cret"))
        assert untrusted.outcome is DeliveryOutcome.retry and untrusted.reply
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.reply or "certificate" in untrusted.reply.lower()
        assert len(box.messages) == 1
    finally:
        controller.stop()


def test_french_times_follow_summer_time() -> None:
    d = dispatch(reported_at=datetime(2026, 7, 1, 10, 0, tzinfo=UTC),
                 routed_at=datetime(2026, 7, 1, 10, 0, 1, tzinfo=UTC))
    text, _ = _parts(build_message(view(d), to=["a@b.fr"], sender="v@veille.test", map_url="{lat},{lon}",
                                   deadline=datetime(2026, 1, 5, 8, 0, tzinfo=UTC) + timedelta(hours=1)))
    assert "Signalé le 01/07/2026 à 12:00" in text and "À traiter avant le 05/01/2026 à 10:00" in text
