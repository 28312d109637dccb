"""The demo's resident who hears back: one incident reported with consent, the messages she got.

Starts the HTTP intake (the JSON API takes the consent; ``/suivi/`` serves the tracking page) and
``veille notify run`` (its e-mails go to the demo's SMTP mailbox, ``LocalBodies``), reports one
incident with an e-mail consent, then plays the body the router dispatched it to: *pris en
compte*, then *résolu*, as StatusUpdates with the dispatch id. Returns the lines to print: the
reference, the tracking URL and every message the resident received, as she would read it.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veille.config import Settings
from veille.local.demo_photos import keep_photo
from veille.producers.sdk import Publisher
from veille.schemas.models import EventType, Incident, IncidentStatus, ServiceKind, StatusUpdate
from veille.security import settings_for, user_env
from veille.statedir import wait_for_process_info
from veille.territory import load_territory
from veille.territory.dispatch import dispatch_id
from veille.territory.routing import route_incident

if TYPE_CHECKING:  # aiosmtpd, which it needs, is a dev extra: `veille --help` works without it
    from veille.local.demo_delivery import LocalBodies

RESIDENT = "habitante@montveille.demo"
Process = Callable[..., AbstractContextManager[Any]]


def hear_back(settings: Settings, bodies: LocalBodies, logs: Path, process: Process) -> list[str]:
    secured = bool(settings.kafka_credentials().mechanism)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    base = f"http://127.0.0.1:{port}"
    common = {**bodies.env, "VEILLE_NOTIFY_PUBLIC_BASE_URL": base, "VEILLE_NOTIFY_SWEEP_SECONDS": "1",
              "VEILLE_NOTIFY_EMAIL_SENDER": "Veille - suivi des signalements <suivi@veille.demo>"}
    intake_env = {**common, "VEILLE_INTAKE_ANONYMOUS_MUNICIPALITIES": "35401",
                  **(user_env(settings, "intake") if secured else {})}
    notify_env = {**common, **(user_env(settings, "notify") if secured else {})}
    with process("intake-notify", ["intake", "serve", "--port", str(port)], logs, intake_env) as intake, \
            process("notify", ["notify", "run", "--metrics-port", "0"], logs, notify_env) as notifier:
        wait_for_process_info(settings.state_dir / "notify.json", notifier)
        _wait_up(base, intake)
        photo = keep_photo(settings)  # her phone's photo, stripped (as POST /v1/photos would)
        answer = _post(f"{base}/v1/incidents", {
            "municipality": "35401", "category": "blocked_drain", "severity": "moderate",
            "location": {"lat": 48.1502, "lon": -1.7003}, "address": "rue des Lavoirs",
            "occurred_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
            "description": "Avaloir bouché rue des Lavoirs, l'eau monte sur le trottoir",
            "photos": [{"sha256": photo}], "notify": {"channel": "email", "address": RESIDENT}})
        body = settings if not secured else settings_for(settings, "simulator")
        # Once routed (the tracking page says so), the body answers; the resident hears each step.
        _until(lambda: "Transmis au service compétent" in _page(answer["tracking_url"]))
        for n, status in enumerate((IncidentStatus.acknowledged, IncidentStatus.resolved), start=1):
            _act_as_the_body(body, answer["id"], status)
            _until(lambda n=n: len(_received(bodies)) >= n)  # type: ignore[misc]
        tracking_ok = "Résolu" in _page(answer["tracking_url"])
    lines = ["\nA resident reported with her consent to hear back, and a photo: "
             f"reference {answer['reference']}",
             f"  tracking page: {answer['tracking_url']} ({'résolu' if tracking_ok else 'NOT up to date'} "
             "while the demo ran)", f"  messages she received ({len(_received(bodies))}):"]
    for mail in _received(bodies):
        lines.append(f"  ── {mail['Subject']}")
        text = mail.get_body(preferencelist=("plain",)).get_content()
        lines += [f"     {line}" for line in text.strip().splitlines()]
    lines.append(f"  her photo, stripped of its EXIF and GPS, kept as sha256 {photo[:12]}…: only the bodies "
                 "dispatched see it (signed URLs)")
    return lines


def _act_as_the_body(settings: Settings, incident_id: str, status: IncidentStatus) -> None:
    """What the body the router chose answers, with its dispatch id."""
    territory = load_territory(settings.territory_dir)
    now = datetime.now(UTC)
    probe = Incident.model_validate({"id": incident_id, "municipality": "35401", "category": "blocked_drain",
                                     "severity": "moderate", "location": {"lat": 48.1502, "lon": -1.7003},
                                     "occurred_at": now - timedelta(hours=2), "reported_at": now,
                                     "channel": "app"})
    target = route_incident(probe, territory).targets[0]
    key = settings.dispatch_key.get_secret_value().encode()
    did = dispatch_id(key, EventType.incident, incident_id, target.agency_id, ServiceKind(target.service))
    with Publisher(settings, client_id="veille-demo-body") as pub:
        pub.publish_status(StatusUpdate(id=uuid.uuid4(), incident_id=uuid.UUID(incident_id),
                                        agency_id=target.agency_id, dispatch_id=did, status=status,
                                        at=datetime.now(UTC)))
        pub.flush(30)


def _page(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def _until(done: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.3)


def _received(bodies: LocalBodies) -> list[Any]:
    return [m for _, rcpt, m in bodies.mailbox.messages if RESIDENT in rcpt]


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=40) as resp:
        return dict(json.loads(resp.read()))


def _wait_up(base: str, proc: Any) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the intake did not start (demo-logs/intake-notify.log)") from None
            time.sleep(0.3)
