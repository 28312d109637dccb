"""Known cases for the store, indicator, console and resident tests (issue 25): RoutedIncident v2
records as the grouping worker publishes them (one per report, every report), written here by hand.

    case A (flash_flood, 4 reports, 35401 and 35402): a1 opens it (stormwater + pm-35401);
        a2 from 35402 reaches pm-35402 as its first dispatch of the case (opened) and the
        stormwater syndicate as an update; a3 and a4 are updates for both; a4 is split out by
        the stormwater syndicate later (a case of its own from then on).
    case B (blocked_drain, 2 reports, 35403): b1 opens it, b2 is an update.
    case C (flood, 1 report): c1 alone in its case (grouped, nothing joined).
    u1 (theft, never grouped), u2 (graffiti, a RoutedIncident v1: no case).

Acknowledgements: stormwater answers a1 10 min after a1, pm-35402 answers a2 8 min after a1
(a2 was reported 3 min after a1): case A's first acknowledgement is 8 min (480 s) after its first
report. b1 is acknowledged 30 min after b1. C and a4 are never acknowledged.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from veille.schemas.models import CaseSplit, DispatchTarget, Record, RoutedIncident, StatusUpdate

STORMWATER = DispatchTarget(agency_id="siba", service="stormwater", rule="flood-stormwater",
                            cross_boundary=False)


def police(muni: str) -> DispatchTarget:
    return DispatchTarget(agency_id=f"pm-{muni}", service="municipal_police", rule="local-police",
                          cross_boundary=False)


def public_works(muni: str) -> DispatchTarget:
    return DispatchTarget(agency_id=f"st-{muni}", service="public_works", rule="drain", cross_boundary=False)


def ids(n: int) -> list[uuid.UUID]:
    return [uuid.uuid4() for _ in range(n)]


class Cases:
    """The known scenario above, at ``base`` (a1's report time)."""

    def __init__(self, base: datetime) -> None:
        self.base = base
        self.a1, self.a2, self.a3, self.a4, self.b1, self.b2, self.c1, self.u1, self.u2 = ids(9)

    def incident(self, iid: uuid.UUID, minutes: float, *, case: uuid.UUID | None, muni: str, category: str,
                 severity: str, channel: str, lat: float | None, lon: float | None,
                 dispatches: list[DispatchTarget],
                 updates: list[DispatchTarget] | None = None) -> RoutedIncident:
        at = self.base + timedelta(minutes=minutes)
        data: dict[str, Any] = {
            "id": iid, "municipality": muni, "category": category, "severity": severity, "channel": channel,
            "location": None if lat is None else {"lat": lat, "lon": lon},
            "occurred_at": at - timedelta(minutes=1), "reported_at": at,
            "routed_at": at + timedelta(seconds=2),
            "reporter_pseudonym": f"ps-{iid.hex[:4]}", "dispatches": dispatches, "case_id": case,
            "updates": updates or [],
        }
        return RoutedIncident.model_validate(data)

    def routed(self) -> list[RoutedIncident]:
        a, b = self.a1, self.b1
        return [
            self.incident(self.a1, 0, case=a, muni="35401", category="flash_flood", severity="moderate",
                          channel="app", lat=48.1000, lon=-1.7000, dispatches=[STORMWATER, police("35401")]),
            self.incident(self.a2, 3, case=a, muni="35402", category="flash_flood", severity="severe",
                          channel="phone", lat=48.1010, lon=-1.6990, dispatches=[police("35402")],
                          updates=[STORMWATER]),
            self.incident(self.a3, 5, case=a, muni="35401", category="flood", severity="minor",
                          channel="web", lat=48.1005, lon=-1.7010, dispatches=[],
                          updates=[STORMWATER, police("35401")]),
            self.incident(self.a4, 7, case=a, muni="35402", category="flash_flood", severity="moderate",
                          channel="town_hall_desk", lat=48.0995, lon=-1.6995, dispatches=[],
                          updates=[STORMWATER, police("35402")]),
            self.incident(self.b1, 60, case=b, muni="35403", category="blocked_drain", severity="minor",
                          channel="app", lat=48.2, lon=-1.6, dispatches=[public_works("35403")]),
            self.incident(self.b2, 70, case=b, muni="35403", category="blocked_drain", severity="moderate",
                          channel="sensor", lat=48.2002, lon=-1.6001, dispatches=[],
                          updates=[public_works("35403")]),
            self.incident(self.c1, 90, case=self.c1, muni="35401", category="flood", severity="severe",
                          channel="phone", lat=48.3, lon=-1.5, dispatches=[STORMWATER]),
            self.incident(self.u1, 100, case=None, muni="35401", category="theft", severity="moderate",
                          channel="web", lat=None, lon=None, dispatches=[police("35401")]),
        ]

    def v1(self) -> RoutedIncident:
        """u2, written by an older router with RoutedIncident v1 (see ``v1_bytes``)."""
        return self.incident(self.u2, 110, case=None, muni="35402", category="graffiti", severity="minor",
                             channel="app", lat=48.15, lon=-1.65, dispatches=[police("35402")])

    def status(self, incident: uuid.UUID, agency: str, status: str, minutes_after_a1: float) -> StatusUpdate:
        return StatusUpdate(id=uuid.uuid4(), incident_id=incident, agency_id=agency, status=status,
                            at=self.base + timedelta(minutes=minutes_after_a1))

    def statuses(self) -> list[StatusUpdate]:
        return [self.status(self.a1, "siba", "acknowledged", 10),
                self.status(self.a2, "pm-35402", "acknowledged", 8),
                self.status(self.a1, "siba", "on_site", 40),
                self.status(self.b1, "st-35403", "acknowledged", 90)]

    def split(self) -> CaseSplit:
        return CaseSplit(id=uuid.uuid4(), incident_id=self.a4, case_id=self.a1, agency_id="siba",
                         service="stormwater", dispatch_id=uuid.uuid4(), at=self.base + timedelta(minutes=20))

    def records(self) -> list[Record]:
        return [*self.routed(), self.v1(), *self.statuses(), self.split()]


def v1_bytes(rec: RoutedIncident) -> bytes:
    """``rec`` as an older router wrote it: RoutedIncident v1 (no case_id, no updates)."""
    from veille.schemas import codec

    value = rec.to_avro()
    value.pop("case_id"), value.pop("updates")
    return codec.encode("RoutedIncident", value, version=1)
