"""The messages residents receive: one French text per :class:`~veille.notify.changes.Change`.

E-mail: plain text and HTML (Jinja2, autoescaped), ``Message-ID`` derived from the incident, the
change and its generation (a mail client that de-duplicates on it shows a message sent twice
once), ``List-Unsubscribe`` with one-click ``List-Unsubscribe-Post`` (RFC 8058) on the signed
unsubscribe link, ``Auto-Submitted: auto-generated``. SMS: one text of at most 300 characters.
Every message carries the reference, the tracking page's link and the unsubscribe link, and
nothing else about the incident than its category and municipality: no description, address
or contact (a message may be read by someone else than the resident).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from functools import cache
from uuid import UUID

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from veille.notify.changes import Change

# What happened, said to the resident (or to the relay who will call them back).
HEADLINES: dict[Change, str] = {
    Change.acknowledged: "pris en compte",
    Change.on_site: "intervention en cours",
    Change.resolved: "résolu",
    Change.rerouted: "confié à un autre service",
    Change.closed: "classé",
    Change.duplicate: "rattaché à un signalement déjà en cours",
    Change.reopened: "rouvert",
}
SENTENCES: dict[Change, str] = {
    Change.acknowledged: "Le service compétent a pris en compte votre signalement.",
    Change.on_site: "Une équipe est sur place ou en route pour intervenir.",
    Change.resolved: "Le service compétent indique que le problème signalé est résolu.",
    Change.rerouted: "Votre signalement ne relevait pas du premier service sollicité : il a été "
                     "confié à un autre service, plus à même de le traiter.",
    Change.closed: "Le service compétent a examiné votre signalement et l'a classé : aucune "
                   "intervention n'est prévue.",
    Change.duplicate: "Ce problème avait déjà été signalé : votre signalement a été rattaché au "
                      "premier, qui est en cours de traitement, et il est clos.",
    Change.reopened: "Votre signalement a été rouvert : le service compétent s'en occupe de nouveau.",
}
RELAY_NOTE = ("Vous recevez ce message parce que vous avez transmis ce signalement pour le compte "
              "d'un habitant et demandé à être tenu informé pour le rappeler.")
SMS_MAX = 300


@dataclass(frozen=True)
class Notice:
    """Everything a message says: no personal data."""

    incident_id: UUID
    reference: str
    change: Change
    generation: int
    category_label: str
    municipality_name: str
    tracking_url: str
    unsubscribe_url: str
    on_behalf_of_relay: bool = False

    @property
    def headline(self) -> str:
        return HEADLINES[self.change]

    @property
    def sentence(self) -> str:
        return SENTENCES[self.change]


@cache
def _templates() -> Environment:
    return Environment(loader=PackageLoader("veille.notify", "templates"),
                       autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                       keep_trailing_newline=True)


def subject(n: Notice) -> str:
    return f"Votre signalement {n.reference} : {n.headline}"


def message_id(n: Notice, sender: str) -> str:
    domain = parseaddr(sender)[1].rpartition("@")[2] or "veille.invalid"
    return f"<notify-{n.incident_id}-{n.change.value}-{n.generation}@{domain}>"


def email(n: Notice, *, to: str, sender: str, now: datetime | None = None) -> EmailMessage:
    context = {"n": n, "relay_note": RELAY_NOTE if n.on_behalf_of_relay else None}
    msg = EmailMessage()
    msg["Subject"] = subject(n)
    msg["From"] = sender
    msg["To"] = to
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = message_id(n, sender)
    msg["Auto-Submitted"] = "auto-generated"
    msg["List-Unsubscribe"] = f"<{n.unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(_templates().get_template("notice.txt").render(context))
    msg.add_alternative(_templates().get_template("notice.html").render(context), subtype="html")
    msg["Content-Language"] = "fr"  # after the parts: making them moves Content-* headers into the first
    return msg


def sms(n: Notice) -> str:
    text = (f"Veille : votre signalement {n.reference} ({n.category_label}, {n.municipality_name}) est "
            f"{n.headline}. Suivi : {n.tracking_url} Ne plus être informé : {n.unsubscribe_url}")
    return text[:SMS_MAX]
