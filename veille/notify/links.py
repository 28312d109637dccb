"""The unsubscribe links of the residents' messages: signed, not expiring, one incident each.

``<public_base_url>/suivi/<reference>/desabonnement/<token>``: the token is the incident id
signed with ``VEILLE_NOTIFY_LINK_KEY`` (itsdangerous, salt per purpose). It never expires: a
resident must be able to stop the messages whenever they come. Opening it shows a button
(a mail scanner that follows links unsubscribes nobody); ``POST`` withdraws at once — also the
one-click ``List-Unsubscribe-Post`` of RFC 8058 that mail clients send.
"""

from __future__ import annotations

from uuid import UUID

from itsdangerous import BadSignature, URLSafeSerializer

SALT = "veille.notify.unsubscribe.v1"


class UnsubscribeLinks:
    def __init__(self, key: str, base_url: str) -> None:
        if not key:
            raise ValueError("unsubscribe links need a non-empty key")
        self._serializer = URLSafeSerializer(key, salt=SALT)
        self.base_url = base_url.rstrip("/")

    def token(self, incident_id: UUID) -> str:
        return str(self._serializer.dumps(incident_id.hex))

    def url(self, reference: str, incident_id: UUID) -> str:
        return f"{self.base_url}/suivi/{reference}/desabonnement/{self.token(incident_id)}"

    def verify(self, token: str) -> UUID | None:
        """The incident id the token was signed for, or None (forged, cut short)."""
        try:
            value = self._serializer.loads(token)
            return UUID(hex=value) if isinstance(value, str) else None
        except (BadSignature, ValueError):
            return None
