"""A resident's consent to hear back, as the front-ends receive it: checked, then a
:class:`NotificationConsent` for the consent topic.

JSON API (``POST /v1/incidents``), beside the incident's fields::

    "notify": {"channel": "email", "address": "jeanne@example.fr"}
    "notify": {"channel": "sms", "address": "06 12 34 56 78", "on_behalf_of_relay": true}

Open311: ``attribute[veille_notify]=email`` (or ``sms``) with the request's ``email`` (or
``phone``). The relays' form and file import build the same object. The consent's address is
its own: it is not copied into the incident's ``reporter`` (the contact the acting bodies get),
and the reporter's contact is never used to send messages without this consent.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from veille.notify.sms import normalise_phone
from veille.schemas.models import NotificationChannel, NotificationConsent

EMAIL = re.compile(r"^[^@\s<>,;\"]{1,64}@[^@\s<>,;\"]+\.[^@\s<>,;\"]{2,}$")
CONSENT_FIELD = "notify"


class ConsentError(ValueError):
    """Why a consent cannot be taken (a message for the client, naming the field)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def consent_of(raw: Any, *, incident_id: UUID, reference: str, sms_enabled: bool,
               now: datetime | None = None) -> NotificationConsent:
    if not isinstance(raw, dict):
        raise ConsentError(CONSENT_FIELD, 'an object: {"channel": "email" or "sms", "address": …}')
    unknown = set(raw) - {"channel", "address", "on_behalf_of_relay"}
    if unknown:
        raise ConsentError(f"{CONSENT_FIELD}.{sorted(unknown)[0]}", "unknown field")
    channel = raw.get("channel")
    if channel not in ("email", "sms"):
        raise ConsentError(f"{CONSENT_FIELD}.channel", "email or sms")
    address = raw.get("address")
    if not isinstance(address, str):
        raise ConsentError(f"{CONSENT_FIELD}.address", "required: where to send the messages")
    address = address.strip()
    if channel == "email":
        if len(address) > 254 or not EMAIL.match(address):
            raise ConsentError(f"{CONSENT_FIELD}.address", "not an e-mail address")
    else:
        if not sms_enabled:
            raise ConsentError(f"{CONSENT_FIELD}.channel", "SMS messages are not available on this hub")
        phone = normalise_phone(address)
        if phone is None:
            raise ConsentError(f"{CONSENT_FIELD}.address", "not a phone number")
        address = phone
    relay = raw.get("on_behalf_of_relay", False)
    if not isinstance(relay, bool):
        raise ConsentError(f"{CONSENT_FIELD}.on_behalf_of_relay", "true or false")
    return NotificationConsent(incident_id=incident_id, reference=reference,
                               channel=NotificationChannel(channel), address=address,
                               on_behalf_of_relay=relay, consented_at=now or datetime.now(UTC))
