"""The unsubscribe links of the residents' messages: signed, not expiring, one incident each.

``<public_base_url>/suivi/<reference>/desabonnement/<token>``: the token is a signature of the
incident id with ``VEILLE_NOTIFY_LINK_KEY`` (itsdangerous' ``Signer``, salt per purpose), not the
id itself: the link shows no internal id, the page finds the incident by its reference and checks
the signature against it. It never expires: a resident must be able to stop the messages
whenever they come. Opening it shows a button (a mail scanner that follows links unsubscribes
nobody); ``POST`` withdraws at once — also the one-click ``List-Unsubscribe-Post`` of RFC 8058
that mail clients send.
"""

from __future__ import annotations

import hmac
from uuid import UUID

from itsdangerous import Signer

SALT = "veille.notify.unsubscribe.v1"


class UnsubscribeLinks:
    def __init__(self, key: str, base_url: str) -> None:
        if not key:
            raise ValueError("unsubscribe links need a non-empty key")
        self._signer = Signer(key, salt=SALT)
        self.base_url = base_url.rstrip("/")

    def token(self, incident_id: UUID) -> str:
        return self._signer.get_signature(incident_id.hex).decode()

    def url(self, reference: str, incident_id: UUID) -> str:
        return f"{self.base_url}/suivi/{reference}/desabonnement/{self.token(incident_id)}"

    def verify(self, token: str, incident_id: UUID) -> bool:
        """Was ``token`` signed for this incident (not forged, not cut short, not another's)?"""
        return hmac.compare_digest(token.encode(), self.token(incident_id).encode())
