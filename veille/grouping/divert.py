"""The router's side of grouping: one ``report`` record on ``<prefix>.grouping``, keyed by the
H3 cell holding the point, in place of the dispatches and the routing record (docs/grouping.md).

Built by hand into JSON (no pydantic round trip): it is on the router's hot path, and the
worker validates it at its boundary (:func:`veille.grouping.envelope.decode`).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime

from veille.grouping.cells import cell_of
from veille.kafka import Output
from veille.schemas.models import Incident
from veille.territory.routing import RoutingDecision
from veille.topics import Topics


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def grouping_output(topics: Topics, resolution: int, incident: Incident, decision: RoutingDecision,
                    routed_at: datetime, pseudonym: str | None, payload: bytes) -> Output:
    loc = incident.location
    assert loc is not None  # only located reports are grouped
    report = {
        "id": str(incident.id), "municipality": incident.municipality,
        "where": decision.municipalities[0] if decision.municipalities else incident.municipality,
        "category": incident.category.value, "severity": incident.severity.value,
        "channel": incident.channel.value, "lat": loc.lat, "lon": loc.lon,
        "occurred_at": _ms(incident.occurred_at), "reported_at": _ms(incident.reported_at),
        "routed_at": _ms(routed_at), "pseudonym": pseudonym,
        "targets": [{"agency_id": t.agency_id, "service": t.service.value, "rule": t.rule,
                     "cross_boundary": t.cross_boundary} for t in decision.targets],
        "payload": base64.b64encode(payload).decode(),
    }
    value = json.dumps({"v": 1, "kind": "report", "report": report}, separators=(",", ":")).encode()
    return Output(topics.grouping, cell_of(loc.lat, loc.lon, resolution).encode(), value)


__all__ = ["grouping_output"]
