"""E-mail delivery: a French message (plain text and HTML) per dispatch, sent over SMTP.

The message says what (category, severity, description), where (municipality, address,
coordinates and a map link), when (occurred, reported, routed, the deadline when one applies),
and carries the response link (:mod:`veille.deliver.links`; the caller passes its URL). The
reporter's contact is added only when the agency's ``email`` section sets
``include_reporter_contact`` and the dispatch carries one. ``Message-ID`` is derived from the
dispatch id, so every attempt of one dispatch has the same: a mailbox or filter that
de-duplicates on it shows the dispatch once. ``Auto-Submitted: auto-generated`` keeps
auto-replies away (RFC 3834).

Sent with ``aiosmtplib`` to the relay of ``VEILLE_DELIVERY_SMTP_*`` (STARTTLS required by
default, implicit TLS or none for a local relay; optional login). Outcome: 250 delivered;
SMTP 4xx, timeouts and lost connections retry; 5xx (and a relay refusing STARTTLS) failed.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from functools import cache
from uuid import UUID
from zoneinfo import ZoneInfo

import aiosmtplib
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from veille.deliver.config import EmailDelivery
from veille.deliver.outcome import Attempt, Stopwatch, bounded
from veille.deliver.settings import DeliverySettings
from veille.deliver.view import DispatchView, severity_label, view
from veille.schemas.models import DeliveryMethod, DeliveryOutcome, Dispatch

PARIS = ZoneInfo("Europe/Paris")
log = logging.getLogger("veille.deliver.email")


@cache
def _templates() -> Environment:
    return Environment(loader=PackageLoader("veille.deliver", "templates"),
                       autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                       keep_trailing_newline=True)


def french_time(value: datetime) -> str:
    """``12/03/2026 à 14:05`` in metropolitan French time."""
    return value.astimezone(PARIS).strftime("%d/%m/%Y à %H:%M")


def message_id(dispatch_id: UUID, sender: str) -> str:
    domain = parseaddr(sender)[1].rpartition("@")[2] or "veille.invalid"
    return f"<dispatch-{dispatch_id}@{domain}>"


def _short(dispatch_id: UUID) -> str:
    head = dispatch_id.hex[:8].upper()
    return f"{head[:4]}-{head[4:]}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def build_message(v: DispatchView, *, to: Sequence[str], sender: str, map_url: str,
                  response_url: str | None = None, link_expires: datetime | None = None,
                  deadline: datetime | None = None, municipality_name: str | None = None,
                  include_reporter_contact: bool = False, now: datetime | None = None) -> EmailMessage:
    d = v.dispatch
    municipality = f"{municipality_name} ({d.municipality})" if municipality_name else d.municipality
    alert = d.event_type.value == "alert"
    what = f"Alerte : {v.headline or v.category_label}" if alert else v.category_label
    dash = " \u2013 "
    case = d.case
    update = case is not None and case.role.value == "update"
    severity = severity_label(case.severity) if case is not None else v.severity_label
    head = "[Veille] "
    if case is not None:  # a case says so, and how many reports it holds (docs/grouping.md)
        head += "Mise à jour du dossier : " if update else "Dossier : "
    tail = f" ({case.reports} signalements liés)" if case is not None and case.reports > 1 else ""
    subject = _one_line(f"{head}{what}{dash}{severity}{dash}{municipality_name or d.municipality}"
                        f"{tail} (réf. {v.short_id})")
    point = v.location
    context = {
        "v": v, "what": what, "subject": subject, "municipality": municipality,
        "map_link": map_url.format(lat=f"{point.lat:.6f}", lon=f"{point.lon:.6f}") if point else "",
        "occurred": french_time(v.occurred_at) if v.occurred_at else None,
        "reported": french_time(d.reported_at), "routed": french_time(d.routed_at),
        "deadline": french_time(deadline) if deadline else None,
        "link_expires": french_time(link_expires) if link_expires else None,
        "response_url": response_url,
        "photos": [(link.url, french_time(link.expires_at)) for link in v.photo_links],
        "reporter": v.reporter if include_reporter_contact else None,
        "case": case, "case_update": update, "case_severity": severity,
        "case_ref": _short(case.update_of) if update and case is not None and case.update_of else None,
    }
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = message_id(d.id, sender)
    if update and case is not None and case.update_of is not None:  # threads under the case's e-mail
        msg["In-Reply-To"] = msg["References"] = message_id(case.update_of, sender)
    msg["Auto-Submitted"] = "auto-generated"
    msg["Content-Language"] = "fr"
    msg["X-Veille-Dispatch-Id"] = str(d.id)
    msg.set_content(_templates().get_template("dispatch.txt").render(context))
    msg.add_alternative(_templates().get_template("dispatch.html").render(context), subtype="html")
    return msg


class EmailSender:
    """Sends dispatch e-mails through the configured SMTP relay (a connection per message)."""

    def __init__(self, settings: DeliverySettings) -> None:
        self.settings = settings
        self._tls: ssl.SSLContext | None = None
        if settings.smtp_security != "none":
            self._tls = ssl.create_default_context(cafile=settings.smtp_ca_file or None)

    async def deliver(self, dispatch: Dispatch, config: EmailDelivery, *,
                      response_url: str | None = None, link_expires: datetime | None = None,
                      deadline: datetime | None = None, municipality_name: str | None = None,
                      dispatch_view: DispatchView | None = None) -> Attempt:
        message = build_message(
            dispatch_view or view(dispatch), to=config.to, sender=self.settings.smtp_sender,
            map_url=self.settings.map_url, response_url=response_url, link_expires=link_expires,
            deadline=deadline, municipality_name=municipality_name,
            include_reporter_contact=config.include_reporter_contact)
        attempt = await self.send(message, config.to)
        log.info("email dispatch=%s agency=%s recipients=%d outcome=%s code=%s latency_ms=%d",
                 dispatch.id, dispatch.agency_id, len(config.to), attempt.outcome.value,
                 attempt.status_code, attempt.latency_ms)
        return attempt

    async def send(self, message: EmailMessage, recipients: Sequence[str]) -> Attempt:
        s = self.settings
        clock = Stopwatch()

        def result(outcome: DeliveryOutcome, code: int | None, reply: str) -> Attempt:
            return Attempt(method=DeliveryMethod.email, outcome=outcome, status_code=code,
                           reply=bounded(reply), latency_ms=clock.ms())

        try:
            refused, reply = await aiosmtplib.send(
                message, sender=parseaddr(s.smtp_sender)[1], recipients=list(recipients),
                hostname=s.smtp_host, port=s.smtp_port, timeout=s.smtp_timeout_seconds,
                use_tls=s.smtp_security == "tls", start_tls=s.smtp_security == "starttls",
                tls_context=self._tls, username=s.smtp_username or None,
                password=s.smtp_password.get_secret_value() or None)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            text = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            permanent = all(c >= 500 for c in codes)
            return result(DeliveryOutcome.failed if permanent else DeliveryOutcome.retry, max(codes), text)
        except aiosmtplib.SMTPResponseException as exc:
            outcome = DeliveryOutcome.failed if exc.code >= 500 else DeliveryOutcome.retry
            return result(outcome, exc.code, f"{exc.code} {exc.message}")
        except (aiosmtplib.SMTPTimeoutError, TimeoutError):
            return result(DeliveryOutcome.retry, None, f"no answer within {s.smtp_timeout_seconds:g} s")
        except OSError as exc:  # refused, reset, TLS failure, unknown host
            return result(DeliveryOutcome.retry, None, f"{type(exc).__name__}: {exc}")
        except aiosmtplib.SMTPException as exc:  # e.g. STARTTLS required but not offered
            return result(DeliveryOutcome.failed, None, f"{type(exc).__name__}: {exc}")
        text = f"250 {reply}"
        if refused:
            text += " (refused: " + "; ".join(f"{a}: {r.code} {r.message}" for a, r in refused.items()) + ")"
        return result(DeliveryOutcome.delivered, 250, text)
