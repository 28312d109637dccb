"""Helpers of the desk's case tests: a case as a body's dispatch topic carries it (Dispatch v2)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from response_helpers import routed_dispatch

from veille.config import Settings
from veille.schemas.models import CaseRef, CaseRole, CaseSplit, Dispatch, GeoPoint, ServiceKind


def case_of(settings: Settings, n: int, agency: str = "mairie-35401",
            service: ServiceKind = ServiceKind.public_works) -> list[Dispatch]:
    """A case of ``n`` flash-flood reports as ``agency`` receives it: the opening, then updates
    (each with the id the router derives for its report), the last one severe."""
    now = datetime.now(UTC).replace(microsecond=0)
    channels = ["phone", "app", "town_hall_desk", "web"]
    reports = [routed_dispatch(settings, agency=agency, service=service, category="flash_flood",
                               severity="critical" if i == n - 1 and n > 1 else "moderate",
                               channel=channels[i % 4], municipality="35401",
                               reporter={"name": f"Personne {i}", "phone": f"06000000{i:02d}"},
                               reported_at=now - timedelta(minutes=30 - i),
                               location={"lat": 48.15 + i / 10_000, "lon": -1.7002})
               for i in range(n)]
    opened = reports[0]
    positions = [GeoPoint(lat=48.15 + i / 10_000, lon=-1.7002) for i in range(n)]
    out = []
    for i, d in enumerate(reports):
        case = CaseRef(id=uuid.UUID(opened.event_id), role=CaseRole.opened if i == 0 else CaseRole.update,
                       update_of=None if i == 0 else opened.id, reports=i + 1,
                       severity="critical" if i == n - 1 and n > 1 else "moderate",
                       municipalities=["35401"], positions=positions[: i + 1])
        out.append(d.model_copy(update={"case": case}))
    return out


def split_of(d: Dispatch, **over: Any) -> CaseSplit:
    assert d.case is not None
    return CaseSplit(**{"id": uuid.uuid4(), "incident_id": uuid.UUID(d.event_id), "case_id": d.case.id,
                        "agency_id": d.agency_id, "service": d.service, "dispatch_id": d.id,
                        "at": datetime.now(UTC), **over})
