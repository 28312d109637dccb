"""Records of one incident's life, as the router writes them to ``<prefix>.routed``."""

from __future__ import annotations

import datetime as dt
import socket
import uuid
from typing import Any

from veille.schemas.models import RoutedIncident, StatusUpdate


def routed(incident_id: uuid.UUID, *agencies: str, rule: str = "streetlight-35401",
           at: dt.datetime | None = None,
           category: str = "broken_streetlight", municipality: str = "35401") -> RoutedIncident:
    now = at or dt.datetime.now(dt.UTC)
    return RoutedIncident.model_validate({
        "id": incident_id, "municipality": municipality, "category": category, "severity": "moderate",
        "channel": "app", "location": {"lat": 48.15, "lon": -1.70},
        "occurred_at": now - dt.timedelta(minutes=10), "reported_at": now - dt.timedelta(minutes=1),
        "routed_at": now,
        "dispatches": [{"agency_id": a, "service": "public_works", "rule": rule, "cross_boundary": False}
                       for a in agencies]})


def status(incident_id: uuid.UUID, agency: str, value: str, at: dt.datetime | None = None,
           **over: Any) -> StatusUpdate:
    data: dict[str, Any] = {"id": uuid.uuid4(), "incident_id": incident_id, "agency_id": agency,
                            "dispatch_id": uuid.uuid4(), "status": value, "at": at or dt.datetime.now(dt.UTC)}
    data.update(over)
    return StatusUpdate.model_validate(data)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
