"""One message to one consent, by its channel: e-mail through the deliverer's SMTP client
(``veille.deliver.email.EmailSender``: the deployment's relay, ``VEILLE_DELIVERY_SMTP_*``),
SMS through the gateway adapter (:mod:`veille.notify.sms`)."""

from __future__ import annotations

from veille.deliver.email import EmailSender
from veille.deliver.settings import DeliverySettings
from veille.notify import messages
from veille.notify.messages import Notice
from veille.notify.settings import NotifySettings
from veille.notify.sms import SmsGateway, normalise_phone
from veille.schemas.models import DeliveryOutcome, NotificationChannel, NotificationConsent


class Messenger:
    def __init__(self, settings: NotifySettings, delivery: DeliverySettings) -> None:
        self.settings = settings
        self.email = EmailSender(delivery)
        self.sms = SmsGateway(settings)

    async def send(self, consent: NotificationConsent, notice: Notice) -> tuple[DeliveryOutcome, str]:
        """The outcome, and what may be logged of it (a status code, never the address)."""
        if consent.channel is NotificationChannel.email:
            msg = messages.email(notice, to=consent.address, sender=self.settings.email_sender)
            attempt = await self.email.send(msg, [consent.address])
            return attempt.outcome, f"SMTP {attempt.status_code}" if attempt.status_code else "SMTP no answer"
        phone = normalise_phone(consent.address)
        if phone is None:
            return DeliveryOutcome.failed, "not a phone number"
        if not self.sms.configured:
            return DeliveryOutcome.failed, "no SMS gateway configured"
        key = messages.message_id(notice, "sms@veille.invalid").strip("<>")
        return await self.sms.send(phone, messages.sms(notice), key)
