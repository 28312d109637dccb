"""SMS through an HTTP gateway: one documented adapter, any provider behind a small shim.

Interface (``VEILLE_NOTIFY_SMS_*``; see ``docs/notify.md``)::

    POST <sms_url>
    <sms_auth_header>: <sms_auth_value>          e.g. Authorization: Bearer …
    Content-Type: application/json
    Idempotency-Key: <message key>               the same for every attempt of one message
    {"to": "+33612345678", "from": "VEILLE", "text": "…", "message_key": "<message key>"}

2xx: accepted. 408, 429 and 5xx, a timeout or a lost connection: tried again later. Any other
answer: refused for good (logged with its status, never with the number or the text).
"""

from __future__ import annotations

import logging
import re

import aiohttp

from veille.deliver.outcome import http_outcome
from veille.notify.settings import NotifySettings
from veille.schemas.models import DeliveryOutcome

log = logging.getLogger("veille.notify.sms")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def normalise_phone(text: str) -> str | None:
    """A French or international number as E.164 (``06 12 34 56 78`` -> ``+33612345678``), or None."""
    digits = re.sub(r"[\s.()-]", "", text)
    if re.fullmatch(r"0[1-9]\d{8}", digits):
        digits = "+33" + digits[1:]
    elif digits.startswith("00"):
        digits = "+" + digits[2:]
    return digits if E164.match(digits) else None


class SmsGateway:
    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings

    @property
    def configured(self) -> bool:
        return bool(self.settings.sms_url)

    async def send(self, to: str, text: str, message_key: str) -> tuple[DeliveryOutcome, str]:
        """The outcome and what to log of it (the HTTP status or the error's type)."""
        s = self.settings
        headers = {"Idempotency-Key": message_key}
        if s.sms_auth_value.get_secret_value():
            headers[s.sms_auth_header] = s.sms_auth_value.get_secret_value()
        body = {"to": to, "from": s.sms_sender, "text": text, "message_key": message_key}
        try:
            timeout = aiohttp.ClientTimeout(total=s.sms_timeout_seconds)
            async with aiohttp.ClientSession(timeout=timeout) as http, \
                    http.post(s.sms_url, json=body, headers=headers) as resp:
                await resp.read()
                return http_outcome(resp.status), f"HTTP {resp.status}"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return DeliveryOutcome.retry, type(exc).__name__
