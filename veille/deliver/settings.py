"""Settings of delivery (environment, prefix ``VEILLE_DELIVERY_``), apart from the hub's ``Settings``.

They are the deployment's side of delivery: where the SMTP relay is, the key of the response
links, which private networks a test or demo may deliver to. What each *agency* receives, and
where, is its ``delivery:`` section in ``jurisdiction.yaml`` (:mod:`veille.deliver.config`).
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class DeliverySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VEILLE_DELIVERY_", env_file=None, extra="ignore")

    # SSRF: webhook and Open311 destinations in private, loopback, link-local, multicast or
    # reserved ranges are refused, except in these networks (comma-separated CIDRs, e.g.
    # "127.0.0.0/8,::1/128" for the tests and the demo's local receivers). Empty in production.
    allowed_networks: str = ""

    # HTTP (webhook and Open311): whole-request timeout, seconds.
    http_timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    # SMTP relay. security: "starttls" (refuses a server without STARTTLS), "tls" (implicit
    # TLS, port 465) or "none" (a local relay only: the message crosses the network in clear).
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_ca_file: str = ""  # CA bundle for a relay with a private CA; "" = the system's
    smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    smtp_sender: str = "Veille <veille@localhost>"
    # Map link of the e-mails: {lat} and {lon} are replaced by the point's coordinates.
    map_url: str = "https://www.openstreetmap.org/?mlat={lat}&mlon={lon}#map=18/{lat}/{lon}"

    # Response links (veille.deliver.links): the key signs them (local default for the demo
    # only: production sets its own), they expire after link_max_age_hours.
    link_key: SecretStr = SecretStr("veille-local-response-link-key")
    # Former keys still accepted while links signed with them are in mailboxes (comma-separated).
    link_previous_keys: SecretStr = SecretStr("")
    link_max_age_hours: float = Field(default=168.0, gt=0, le=24 * 90)
    # Where the recipients reach the intake's response page (producers/response, mounted at
    # /reponse): the links are <response_base_url>/<dispatch id>/<token>, e.g.
    # "https://veille.example.fr/reponse". Empty: the e-mails carry no response link.
    response_base_url: str = ""

    # Open311 bodies: how often the statuses of the requests sent to them are read back.
    open311_poll_seconds: float = Field(default=60.0, gt=0)

    # Retries (veille.deliver.retry): full-jitter exponential backoff per destination, from
    # retry_base_seconds doubling up to retry_max_seconds; a dispatch not delivered
    # undelivered_after_minutes after it was routed is marked undelivered (and still retried).
    retry_base_seconds: float = Field(default=1.0, gt=0)
    # The cap bounds how long a body waits for its dispatches once its system is back: with
    # 300 s, a webhook down 2 minutes got them all 207 s after it came back (make chaos).
    retry_max_seconds: float = Field(default=60.0, gt=0)
    undelivered_after_minutes: float = Field(default=30.0, gt=0)
    # A case's updates by e-mail (veille/deliver/cases.py): at most one e-mail per case and
    # body in this many minutes, carrying the latest count; 0 mails each update.
    email_update_minutes: float = Field(default=15.0, ge=0)

    @field_validator("response_base_url")
    @classmethod
    def _base_url_is_http(cls, value: str) -> str:
        value = value.strip()
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.hostname or parts.query
                      or parts.fragment or parts.username or parts.password):
            raise ValueError("response_base_url: an http(s) URL with a host, no query, fragment "
                             "or credentials, e.g. https://veille.example.fr/reponse")
        return value.rstrip("/")

    @field_validator("allowed_networks")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        parse_networks(value)
        return value

    @property
    def networks(self) -> tuple[Network, ...]:
        return parse_networks(self.allowed_networks)

    @property
    def link_keys(self) -> list[str]:
        """Every accepted key, the current one last (itsdangerous signs with the last)."""
        previous = [k.strip() for k in self.link_previous_keys.get_secret_value().split(",") if k.strip()]
        return [*previous, self.link_key.get_secret_value()]

    @property
    def link_max_age(self) -> timedelta:
        return timedelta(hours=self.link_max_age_hours)


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"127.0.0.0/8, ::1/128"`` -> networks; a bad entry raises ValueError naming it."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"allowed_networks: {item!r} is not an IP network (CIDR)") from None
    return tuple(networks)
