"""What a representative receives: a French e-mail or SMS with a signed link to their page.

The link is ``<public_base_url>/pcs/<token>``: the token is the (activation, owner, target)
triple signed with ``VEILLE_NOTIFY_LINK_KEY`` (itsdangerous, salt per purpose), so it names no
person of the register and cannot be forged for another representative's area. The e-mail's
Message-ID is the notification's deterministic id: a copy sent again after a crash is the
same message to the recipient's mail client, and the SMS gateway's Idempotency-Key is the
same id (the gateway drops the copy).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage

from itsdangerous import BadSignature, URLSafeSerializer

from veille.pcs.cascade import CELL, Notification

SALT = "veille.pcs.page.v1"


@dataclass(frozen=True)
class PageClaim:
    activation: str
    owner: str
    target: str
    category: str  # the incident category of what a "besoin d'aide" reports (the alert's)


class PageLinks:
    def __init__(self, key: str, base_url: str) -> None:
        if not key:
            raise ValueError("PCS page links need a non-empty key")
        self._s = URLSafeSerializer(key, salt=SALT)
        self.base_url = base_url.rstrip("/")

    def token(self, n: Notification, category: str = "other") -> str:
        return str(self._s.dumps([n.activation, n.owner, n.target, category]))

    def url(self, n: Notification, category: str = "other") -> str:
        return f"{self.base_url}/pcs/{self.token(n, category)}"

    def verify(self, token: str) -> PageClaim | None:
        try:
            a, o, t, c = self._s.loads(token)
        except (BadSignature, ValueError, TypeError):
            return None
        return PageClaim(str(a), str(o), str(t), str(c))


def message_id(n: Notification) -> str:
    return f"<pcs-{n.id}@veille.invalid>"


def _lead(n: Notification, town: str) -> str:
    if n.target == CELL:
        return (f"Cellule de sauvegarde de {town} : le référent {n.owner} n'a pas accusé réception "
                "de l'alerte, ni son suppléant. Merci de prendre le relais pour son secteur.")
    if n.target != n.owner:
        return (f"Vous êtes suppléant : le référent {n.owner} n'a pas répondu. Merci de prendre "
                f"le relais pour son secteur à {town}.")
    return f"Le plan communal de sauvegarde de {town} est déclenché pour votre secteur."


def email(n: Notification, *, to: str, sender: str, url: str, town: str, headline: str) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"[PCS {town}] {headline} : merci de passer voir les personnes de votre secteur"
    msg["From"] = sender
    msg["To"] = to
    msg["Message-ID"] = message_id(n)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        f"{_lead(n, town)}\n\n{headline}\n\n"
        "Ouvrez ce lien pour accuser réception, voir les consignes et indiquer pour chaque "
        f"personne inscrite au registre : vu, tout va bien / besoin d'aide / absent.\n\n{url}\n\n"
        "Ce lien vous est personnel : ne le transférez pas.\n")
    return msg


def sms(n: Notification, *, url: str, town: str, headline: str) -> str:
    who = "Relais " if n.target != n.owner else ""
    return f"{who}PCS {town} : {headline}. Accusez réception et passez voir vos personnes : {url}"


__all__ = ["PageClaim", "PageLinks", "email", "message_id", "sms"]
