"""Settings of hearing back (environment, prefix ``VEILLE_NOTIFY_``), apart from the hub's ``Settings``.

Shared by the intake (references, tracking page, unsubscribe links, writing consents) and the
notifier (``veille notify run``). The SMTP relay is the deliverer's (``VEILLE_DELIVERY_SMTP_*``,
:class:`veille.deliver.settings.DeliverySettings`): one relay per deployment.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_REFERENCE_KEY = "veille-local-reference-key"
LOCAL_LINK_KEY = "veille-local-notify-link-key"


class NotifySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VEILLE_NOTIFY_", env_file=None, extra="ignore")

    # References given to residents are a keyed MAC of the incident id (veille.notify.reference):
    # without the key nobody can derive one from an id, nor enumerate them. Set it in production,
    # the same on the intake and the notifier; changing it changes every reference.
    reference_key: SecretStr = SecretStr(LOCAL_REFERENCE_KEY)
    # Signs the unsubscribe links (itsdangerous); the same on the intake and the notifier.
    link_key: SecretStr = SecretStr(LOCAL_LINK_KEY)
    # Where residents reach the intake's pages: links are <public_base_url>/suivi/<reference>.
    public_base_url: str = "http://127.0.0.1:8080"

    # A consent (the contact) is withdrawn by a tombstone this many days after its incident was
    # resolved or closed (0: at once, after the last message); one whose incident never came
    # (a report the broker refused after its consent was written) after orphan_days.
    retention_days: float = Field(default=30.0, ge=0, le=365)
    orphan_days: float = Field(default=7.0, ge=0, le=365)
    # How often the notifier looks for consents past their retention.
    sweep_seconds: float = Field(default=60.0, gt=0)

    # E-mail: the sender of the residents' messages (the relay is VEILLE_DELIVERY_SMTP_*).
    email_sender: str = "Veille - suivi des signalements <suivi@localhost>"

    # SMS gateway (veille.notify.sms): POST <sms_url> with a JSON body, the header
    # <sms_auth_header>: <sms_auth_value>. Empty URL: SMS consents are not accepted.
    sms_url: str = ""
    sms_auth_header: str = "Authorization"
    sms_auth_value: SecretStr = SecretStr("")
    sms_sender: str = "VEILLE"
    sms_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    # Retries of a message the relay or gateway refused for now (4xx SMTP, 5xx HTTP, timeouts).
    retry_attempts: int = Field(default=5, ge=1, le=50)
    retry_base_seconds: float = Field(default=1.0, gt=0)

    @field_validator("public_base_url", "sms_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment
                      or parts.username or parts.password):
            raise ValueError("an http(s) URL with a host, no fragment or credentials")
        return value.rstrip("/")

    @property
    def retention_seconds(self) -> float:
        return self.retention_days * 86400

    def tracking_url(self, reference: str) -> str:
        return f"{self.public_base_url}/suivi/{reference}"
