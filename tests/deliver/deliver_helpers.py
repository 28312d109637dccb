"""Helpers of the delivery tests: dispatches, real local servers (HTTP, SMTP), a self-signed CA."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from veille.deliver.settings import DeliverySettings
from veille.local.receivers import KEY, SECRET, GeoReport, Mailbox, Receiver
from veille.schemas.models import Alert, Dispatch, EventType, Incident, ServiceKind

LOCAL_NETWORKS = "127.0.0.0/8,::1/128"
__all__ = ["KEY", "SECRET", "GeoReport", "Mailbox", "Receiver"]  # the bodies' systems, from veille.local


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
