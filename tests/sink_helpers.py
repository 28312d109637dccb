"""Helpers of the sink tests: routed records, a real chDB store per test, count queries."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from veille.reads.indicators import Cell
from veille.schemas.models import DeliveryReceipt, DispatchTarget, RoutedAlert, RoutedIncident, StatusUpdate
from veille.sinks.store import ChdbStore

MUNIS = ("35401", "35402", "35403")
EVENT_TABLES = ("incidents", "dispatches", "status_events", "alerts", "delivery_receipts")
VIEW_TABLES = ("reports_daily", "dispatch_daily", "incident_lifecycle", "alerts_daily")


@contextmanager
def chdb_store(path: Path) -> Iterator[ChdbStore]:
    """A migrated chDB store; closed after, since chDB allows one open path per process."""
    store = ChdbStore(path, "veille")
    try:
        store.migrate()
        yield store
    finally:
        store.close()


def now_ms() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def routed_incident(i: int, *, base: datetime | None = None, **overrides: Any) -> RoutedIncident:
    base = base or now_ms()
    muni = overrides.get("municipality", MUNIS[i % len(MUNIS)])
    data: dict[str, Any] = {
        "id": uuid.UUID(int=random.getrandbits(128)),
        "municipality": muni,
        "category": ("flood", "theft", "graffiti")[i % 3],
        "severity": "severe",
        "channel": ("app", "phone", "web", "town_hall_desk")[i % 4],
        "location": {"lat": 48.1 + i / 1000, "lon": -1.7},
        "occurred_at": base - timedelta(minutes=130),
        "reported_at": base - timedelta(minutes=120),
        "routed_at": base - timedelta(minutes=119),
        "reporter_pseudonym": f"ps-{i % 7}",
        "dispatches": [
            DispatchTarget(agency_id=f"pm-{muni}", service="municipal_police", rule="local-police",
                           cross_boundary=False),
            DispatchTarget(agency_id="sdis35", service="fire_rescue", rule="fire", cross_boundary=i % 2 == 0),
        ],
    }
    data.update(overrides)
    return RoutedIncident.model_validate(data)


def status_update(incident: RoutedIncident, status: str, after_minutes: float,
                  agency: str = "sdis35") -> StatusUpdate:
    return StatusUpdate(id=uuid.uuid4(), incident_id=incident.id, agency_id=agency, status=status,
                        at=incident.reported_at + timedelta(minutes=after_minutes))


def routed_alert(i: int, municipalities: list[str] | None = None, status: str = "Actual") -> RoutedAlert:
    now = now_ms()
    return RoutedAlert(
        identifier=f"alert-{i}-{uuid.uuid4().hex[:6]}", sender="pref35@interieur.gouv.fr", sent=now,
        status=status, msg_type="Alert", event="Crue", category="Met", severity="Severe",
        urgency="Immediate", headline="Vigilance crues", municipalities=municipalities or list(MUNIS[:2]),
        routed_at=now,
        dispatches=[DispatchTarget(agency_id="sdis35", service="fire_rescue", rule="alert-fire",
                                   cross_boundary=False)],
    )


def delivery_receipt(dispatch: uuid.UUID | None = None, *, agency: str = "sdis35", method: str = "webhook",
                     attempt: int = 1, outcome: str = "delivered", at: datetime | None = None,
                     latency_ms: int = 120, status_code: int | None = 200,
                     reply: str | None = None) -> DeliveryReceipt:
    """One attempt's receipt, as ``veille deliver run`` publishes it on <prefix>.delivery."""
    return DeliveryReceipt(dispatch_id=dispatch or uuid.uuid4(), agency_id=agency, method=method,
                           attempt=attempt, outcome=outcome, status_code=status_code, reply=reply,
                           latency_ms=latency_ms, at=at or now_ms())


def receipts(n_dispatches: int) -> list[DeliveryReceipt]:
    """Per dispatch: a refused first attempt (503), then every third one undelivered, the rest
    delivered (two receipts each)."""
    out: list[DeliveryReceipt] = []
    base = now_ms() - timedelta(minutes=45)
    for i in range(n_dispatches):
        dispatch = uuid.UUID(int=random.getrandbits(128))
        out.append(delivery_receipt(dispatch, attempt=1, outcome="retry", status_code=503, reply="busy",
                                    at=base + timedelta(seconds=i)))
        last = "undelivered" if i % 3 == 0 else "delivered"
        out.append(delivery_receipt(dispatch, attempt=2, outcome=last, status_code=503 if i % 3 == 0 else 200,
                                    at=base + timedelta(seconds=i, minutes=40)))
    return out


def scenario(n_incidents: int) -> list[RoutedIncident | RoutedAlert | StatusUpdate]:
    """Incidents, a few status updates per incident (some resolved), and two alerts."""
    out: list[RoutedIncident | RoutedAlert | StatusUpdate] = []
    for i in range(n_incidents):
        inc = routed_incident(i)
        out.append(inc)
        out.append(status_update(inc, "acknowledged", 2 + i % 5))
        if i % 3 == 0:
            out.append(status_update(inc, "resolved", 30 + i % 7))
    out += [routed_alert(1), routed_alert(2, ["35403"])]
    return out


def today_cell() -> Cell:
    today = datetime.now(UTC).date()
    return Cell(municipalities=list(MUNIS), start=today - timedelta(days=2), end=today + timedelta(days=2))


def counts(store: ChdbStore) -> dict[str, int]:
    """Raw row counts (no FINAL): a doubled insert shows up here."""
    return {t: int(store.query(f"SELECT count() AS n FROM veille.{t}")[0]["n"])
            for t in (*EVENT_TABLES, *VIEW_TABLES)}


def final_counts(store: ChdbStore) -> dict[str, int]:
    return {t: int(store.query(f"SELECT count() AS n FROM veille.{t} FINAL")[0]["n"]) for t in EVENT_TABLES}
