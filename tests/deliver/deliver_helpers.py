"""Helpers of the delivery tests: dispatches, real local servers (HTTP, SMTP), a self-signed CA."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email
import email.policy
import ipaddress
import itertools
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from veille.deliver.settings import DeliverySettings
from veille.schemas.models import Alert, Dispatch, EventType, Incident, ServiceKind

LOCAL_NETWORKS = "127.0.0.0/8,::1/128"


def settings(**over: Any) -> DeliverySettings:
    """Delivery settings for local receivers (loopback allowed unless overridden)."""
    base: dict[str, Any] = {"allowed_networks": LOCAL_NETWORKS, "http_timeout_seconds": 5.0,
                            "smtp_host": "127.0.0.1", "smtp_security": "none",
                            "smtp_sender": "Veille <veille@veille.test>"}
    return DeliverySettings(**{**base, **over})


def incident(**over: Any) -> Incident:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    data: dict[str, Any] = {
        "id": str(uuid.uuid4()), "municipality": "35401", "category": "damaged_road", "severity": "severe",
        "location": {"lat": 48.15, "lon": -1.7002}, "address": "12 rue de la Veille",
        "occurred_at": now - dt.timedelta(minutes=20), "reported_at": now - dt.timedelta(minutes=5),
        "channel": "app", "description": "Nid-de-poule profond devant l'école",
        "reporter": {"name": "Jeanne Martin", "phone": "0611223344", "email": "jeanne@example.fr"},
    }
    data.update(over)
    return Incident.model_validate(data)


def dispatch(event: Incident | Alert | None = None, *, payload: bytes | None = None, **over: Any) -> Dispatch:
    event = incident() if event is None else event
    now = dt.datetime.now(dt.UTC)
    if isinstance(event, Incident):
        fields: dict[str, Any] = {"event_type": EventType.incident, "event_id": str(event.id),
                                  "municipality": event.municipality, "category": event.category.value,
                                  "severity": event.severity.value, "reported_at": event.reported_at}
    else:
        fields = {"event_type": EventType.alert, "event_id": event.identifier, "municipality": "35401",
                  "category": event.infos[0].category[0].value, "severity": event.infos[0].severity.value,
                  "reported_at": event.sent}
    data: dict[str, Any] = {"id": uuid.uuid4(), "agency_id": "mairie-35401",
                            "service": ServiceKind.public_works, "rule": "voirie",
                            "cross_boundary": False, "routed_at": now,
                            "payload": event.encode() if payload is None else payload, **fields}
    data.update(over)
    return Dispatch.model_validate(data)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def serve(app: web.Application, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Run ``app`` on a free port of ``host``; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@dataclass
class Mailbox:
    """aiosmtpd handler keeping every message it accepts; refuses recipients it is told to."""

    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # address -> SMTP reply

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 Message accepted for delivery"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 (its own CA) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


# --------------------------------------------------------------------------- real peers

SECRET = "whsec_" + base64.b64encode(b"the body's shared secret, 32 b.").decode()


@dataclass
class Receiver:
    """A body's webhook endpoint: verifies, records, answers as told."""

    secret: str = SECRET
    status: int = 204
    delay: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.sleep(self.delay)
        try:
            payload = Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            self.refused.append(str(exc))
            return web.Response(status=401, text=f"signature: {exc}")
        self.received.append(payload)
        self.headers.append(dict(request.headers))
        return web.Response(status=self.status, text="gone" if self.status == 410 else "")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        app.router.add_post("/flood", self.handle)
        return app


KEY = "o311-key-3f9a"
# The specification's service notice example, as a body's server would answer.
NOTICE = ("The City will inspect and require the responsible party to correct within 24 hours and/or "
          "issue a Correction Notice or Notice of Violation of the Public Works Code")


def _error(status: int, description: str) -> web.Response:
    return web.json_response([{"code": status, "description": description}], status=status)


@dataclass
class GeoReport:
    """A body's GeoReport v2 endpoint, in memory."""

    services: frozenset[str] = frozenset({"VOI-02", "EP-01"})
    token_mode: bool = False
    offers_updates: bool = True
    fail_with: int | None = None
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    posted: list[dict[str, str]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(638344))

    async def post_request(self, request: web.Request) -> web.Response:
        if self.fail_with:
            return web.Response(status=self.fail_with, text="internal error")
        form = {k: str(v) for k, v in (await request.post()).items()}
        if form.get("api_key") != KEY:
            return _error(403, "Invalid api_key received -- can't proceed with create_request.")
        if form.get("service_code") not in self.services:
            return _error(404, f"service_code {form.get('service_code')} not found")
        if not ({"lat", "long"} <= set(form) or "address_string" in form):
            return _error(400, "a location (lat/long or address_string) is required")
        self.posted.append(form)
        sid = next(self.ids)  # an integer, as in the specification's examples
        self.requests[str(sid)] = {
            "service_request_id": sid, "status": "open", "status_notes": None,
            "service_code": form["service_code"], "description": form.get("description"),
            "agency_responsible": None, "service_notice": NOTICE,
            "requested_datetime": "2010-04-14T06:37:38-08:00",
            "updated_datetime": "2010-04-14T06:37:38-08:00",
            "expected_datetime": "2010-04-15T06:37:38-08:00", "address": form.get("address_string"),
            "address_id": 545483, "zipcode": 94122, "lat": float(form.get("lat", 0)),
            "long": float(form.get("long", 0)), "media_url": None,
        }
        if self.token_mode:
            token = f"tok{sid}"
            self.tokens[token] = str(sid)
            return web.json_response([{"token": token}], status=201)
        return web.json_response([{"service_request_id": sid, "service_notice": NOTICE, "account_id": None}],
                                 status=201)

    async def get_requests(self, request: web.Request) -> web.Response:
        ids = request.query.get("service_request_id", "").split(",")
        return web.json_response([self.requests[i] for i in ids if i in self.requests])

    async def get_token(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if token not in self.tokens:
            return web.json_response([])
        return web.json_response([{"service_request_id": int(self.tokens[token]), "token": token}])

    async def get_updates(self, request: web.Request) -> web.Response:
        if not self.offers_updates:
            return _error(404, "not found")
        if request.query.get("api_key") != KEY:
            return _error(403, "Invalid api_key")
        start = dt.datetime.fromisoformat(request.query["start_date"])
        end = dt.datetime.fromisoformat(request.query["end_date"])
        return web.json_response([u for u in self.updates
                                  if start <= dt.datetime.fromisoformat(u["updated_datetime"]) <= end])

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/open311/v2/requests.json", self.post_request)
        app.router.add_get("/open311/v2/requests.json", self.get_requests)
        app.router.add_get("/open311/v2/tokens/{token}.json", self.get_token)
        app.router.add_get("/open311/v2/servicerequestupdates.json", self.get_updates)
        return app
