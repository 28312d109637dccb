"""The escalation worker and the router for real, on a territory with short deadlines."""

from __future__ import annotations

import shutil
import urllib.request
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from hub_helpers import HubProcess, hub_settings, read_topics

from veille.config import Settings
from veille.schemas.models import (
    Channel,
    EventType,
    GeoPoint,
    Incident,
    IncidentCategory,
    IncidentStatus,
    RejectionReason,
    ServiceKind,
    Severity,
    StatusUpdate,
)
from veille.territory.dispatch import dispatch_id
from veille.topics import Topics

IN_35401 = GeoPoint(lat=48.15, lon=-1.70)  # Montveille
IN_35402 = GeoPoint(lat=48.175, lon=-1.83)  # Saint-Méen-la-Rivière, its neighbour
WORKER_ENV = {"VEILLE_ESCALATION_TOLERANCE_SECONDS": "1", "VEILLE_ESCALATION_TICK_SECONDS": "0.2"}


def short_deadlines(tmp: Path, deadlines: list[dict[str, Any]]) -> Path:
    """The example territory with these ``response_deadlines`` (seconds-long ones for tests)."""
    target = tmp / "territory"
    shutil.copytree(Settings().territory_dir, target)
    routing = yaml.safe_load((target / "routing.yaml").read_text())
    routing["response_deadlines"] = deadlines
    (target / "routing.yaml").write_text(yaml.safe_dump(routing, allow_unicode=True))
    return target


def deployment(kafka: Any, tmp: Path, deadlines: list[dict[str, Any]]) -> Settings:
    return hub_settings(kafka.settings, tmp / "state", territory_dir=short_deadlines(tmp, deadlines))


def worker(settings: Settings, state_dir: Path | None = None, **env: str) -> HubProcess:
    s = settings if state_dir is None else settings.model_copy(update={"state_dir": state_dir})
    return HubProcess(s, "router", "escalations", "--metrics-port", "0", env={**WORKER_ENV, **env})


def incident(category: IncidentCategory = IncidentCategory.burglary, municipality: str = "35401",
             location: GeoPoint | None = IN_35401, reported: datetime | None = None) -> Incident:
    at = reported or datetime.now(UTC)
    return Incident(id=uuid.uuid4(), municipality=municipality, category=category, severity=Severity.minor,
                    location=location, address=None if location else "place de la Mairie", occurred_at=at,
                    reported_at=at, channel=Channel.app if location else Channel.phone)


def answer(settings: Settings, inc: Incident, agency: str, service: ServiceKind, status: IncidentStatus,
           at: datetime | None = None, reason: RejectionReason | None = None,
           corrected: GeoPoint | None = None) -> StatusUpdate:
    """A status update as the body holding the dispatch sends it (it quotes the dispatch id)."""
    did = dispatch_id(settings.dispatch_key.get_secret_value().encode(), EventType.incident, str(inc.id),
                      agency, service)
    return StatusUpdate(id=uuid.uuid4(), incident_id=inc.id, agency_id=agency, dispatch_id=did, status=status,
                        at=at or datetime.now(UTC), reason=reason, corrected_location=corrected)


def routed_records(settings: Settings, until: Any, timeout: float = 60) -> list[Any]:
    topics = Topics(settings.topic_prefix)
    return [d for _, d in read_topics(settings, [topics.routed], until=lambda out: until([d for _, d in out]),
                                      timeout=timeout)]


def redispatches(records: Iterable[Any], kind: str | None = None) -> list[dict[str, Any]]:
    return [d.value for d in records if d.record_type == "Redispatch" and kind in (None, d.value["kind"])]


def routed_ids(records: Iterable[Any]) -> set[str]:
    return {str(d.value["id"]) for d in records if d.record_type == "RoutedIncident"}


def metric(url: str, name: str, labels: dict[str, str] | None = None) -> float:
    """The sum of a metric's samples (matching ``labels``) on a /metrics page."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line[len(name):len(name) + 1] not in ("{", " "):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in head for k, v in (labels or {}).items()):
            total += float(value)
    return total
