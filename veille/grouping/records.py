"""The Dispatch v2 and RoutedIncident v2 values a grouping decision produces, in the router's
own shape: same dispatch ids (:func:`veille.territory.dispatch.dispatch_ref`), same keys (a
dispatch is keyed by its event id, a routing record by the incident's 16 bytes), same payload
(the original event). Only ``case`` and ``case_id``/``updates`` are new (docs/grouping.md)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from veille.grouping.envelope import Report
from veille.kafka import Output
from veille.schemas.models import DispatchTarget, EventType
from veille.territory.dispatch import dispatch_ref
from veille.topics import Topics

Encode = Callable[[str, str, dict[str, Any]], bytes]  # (topic, record type, Avro value) -> bytes
MAX_POSITIONS = 20


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def body_key(target: DispatchTarget) -> str:
    return f"{target.agency_id}|{target.service.value}"


def case_ref(case: dict[str, Any], role: str, update_of: str | None = None) -> dict[str, Any]:
    """Dispatch v2's ``case`` as it stands now (count, severity, towns, latest positions)."""
    return {"id": case["id"], "role": role, "update_of": update_of, "reports": case["count"],
            "severity": case["severity"], "municipalities": sorted(case["municipalities"]),
            "positions": [{"lat": p[0], "lon": p[1]} for p in case["positions"][-MAX_POSITIONS:]]}


@dataclass(frozen=True)
class Writer:
    topics: Topics
    dispatch_key: bytes
    encode: Encode

    def dispatch_id(self, event_id: str, target: DispatchTarget) -> str:
        return dispatch_ref(self.dispatch_key, EventType.incident, event_id, target.agency_id, target.service)

    def dispatch(self, report: Report, target: DispatchTarget, case: dict[str, Any] | None, *,
                 ref: str | None = None, severity: str | None = None) -> Output:
        """The dispatch of ``report`` to ``target`` (``case``: its CaseRef value, None: not grouped)."""
        event_id = str(report.id)
        topic = self.topics.dispatch(target.agency_id)
        value = {"id": ref or self.dispatch_id(event_id, target), "event_type": EventType.incident.value,
                 "event_id": event_id, "agency_id": target.agency_id, "service": target.service.value,
                 "rule": target.rule, "cross_boundary": target.cross_boundary,
                 "municipality": report.municipality, "category": report.category,
                 "severity": severity or report.severity, "reported_at": at(report.reported_at),
                 "routed_at": at(report.routed_at), "payload": report.payload_bytes(), "case": case}
        return Output(topic, event_id.encode(), self.encode(topic, "Dispatch", value))

    def routed(self, report: Report, case_id: str | None, dispatches: Sequence[DispatchTarget],
               updates: Sequence[DispatchTarget] = ()) -> Output:
        topic = self.topics.routed
        value = {"id": str(report.id), "municipality": report.municipality, "category": report.category,
                 "severity": report.severity, "channel": report.channel,
                 "location": {"lat": report.lat, "lon": report.lon},
                 "occurred_at": at(report.occurred_at), "reported_at": at(report.reported_at),
                 "routed_at": at(report.routed_at), "reporter_pseudonym": report.pseudonym,
                 "dispatches": [_target(t) for t in dispatches], "case_id": case_id,
                 "updates": [_target(t) for t in updates]}
        return Output(topic, UUID(str(report.id)).bytes, self.encode(topic, "RoutedIncident", value))


def _target(t: DispatchTarget) -> dict[str, Any]:
    return {"agency_id": t.agency_id, "service": t.service.value, "rule": t.rule,
            "cross_boundary": t.cross_boundary}


__all__ = ["MAX_POSITIONS", "Writer", "at", "body_key", "case_ref"]
