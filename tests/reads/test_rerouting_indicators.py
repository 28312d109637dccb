"""Re-routing and escalation indicators (veille/reads/rerouting.py) on known data in a real chDB store.

The records go through the sink's own row conversion; the expected values are counted by hand:

  a  35401 flood     pm-35401 + sdis35   pm-35401 refuses (not_competent) -> mairie-35401 at +6 min,
                                         mairie-35401 refuses (wrong_location) -> pm-35402 at +12 min
  b  35401 theft     pm-35401 + sdis35   pm-35401 misses its acknowledgement -> mairie-35401 (escalation)
  c  35402 graffiti  pm-35402 + sdis35   pm-35402 refuses (duplicate): not re-routed
  x  35999 flood     outside the cell, re-routed too (must not count)
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sink_helpers import chdb_store, now_ms, routed_incident, today_cell

from veille.reads import rerouting
from veille.reads.indicators import Cell, render_text
from veille.reads.indicators import compute as all_indicators
from veille.schemas.models import Redispatch, RoutedIncident, StatusUpdate
from veille.sinks.rows import to_rows


def refusal(inc: RoutedIncident, agency: str, minutes: float, reason: str) -> StatusUpdate:
    return StatusUpdate(id=uuid.uuid4(), incident_id=inc.id, agency_id=agency, dispatch_id=uuid.uuid4(),
                        status="rejected", at=inc.reported_at + timedelta(minutes=minutes), reason=reason)


def redispatch(inc: RoutedIncident, kind: str, agency: str, previous: str, minutes: float, reason: str,
               hop: int = 1) -> Redispatch:
    service = "municipal_safeguard" if agency.startswith("mairie") else "municipal_police"
    return Redispatch(
        id=uuid.uuid4(), kind=kind, incident_id=inc.id, agency_id=agency, service=service,
        rule="overdue:ack" if kind == "escalated" else "local-police+rerouted", cross_boundary=False, hop=hop,
        previous_id=uuid.uuid4(), previous_agency_id=previous, reason=reason,
        step=None if kind == "escalated" else "safeguard", municipality=inc.municipality,
        category=inc.category.value, severity=inc.severity.value, reported_at=inc.reported_at,
        refused_at=inc.routed_at + timedelta(minutes=minutes - 1),
        routed_at=inc.routed_at + timedelta(minutes=minutes))


def test_rerouting_indicators_on_known_data(tmp_path: Path) -> None:
    base = now_ms()
    a = routed_incident(0, base=base, municipality="35401")
    b = routed_incident(1, base=base, municipality="35401")
    c = routed_incident(2, base=base, municipality="35402")
    x = routed_incident(3, base=base, municipality="35999", category="flood")
    records: list[Any] = [
        a, b, c, x,
        refusal(a, "pm-35401", 5, "not_competent"),
        redispatch(a, "rerouted", "mairie-35401", "pm-35401", 6, "not_competent"),
        refusal(a, "mairie-35401", 10, "wrong_location"),
        redispatch(a, "rerouted", "pm-35402", "mairie-35401", 12, "wrong_location", hop=2),
        redispatch(b, "escalated", "mairie-35401", "pm-35401", 30, "ack", hop=0),
        refusal(c, "pm-35402", 3, "duplicate"),
        refusal(x, "pm-35999", 3, "not_competent"),
        redispatch(x, "rerouted", "mairie-35401", "pm-35999", 4, "not_competent"),
    ]
    cell = Cell(municipalities=["35401", "35402"], start=today_cell().start, end=today_cell().end)
    with chdb_store(tmp_path / "chdb") as store:
        for table, rows in to_rows(records, base).items():
            store.insert(table, rows, f"{table}|x")
            store.insert(table, rows, f"{table}|replayed")  # a replay changes nothing
        ind = rerouting.compute(store, cell)
        text = render_text(all_indicators(store, cell))

    # Dispatched per body includes the dispatches re-routings and escalations made.
    assert ind["by_agency"] == [
        {"agency_id": "mairie-35401", "dispatched": 2, "rerouted": 1, "share": 0.5},  # a, b
        {"agency_id": "pm-35401", "dispatched": 2, "rerouted": 1, "share": 0.5},
        {"agency_id": "pm-35402", "dispatched": 2, "rerouted": 0, "share": 0.0},
        {"agency_id": "sdis35", "dispatched": 3, "rerouted": 0, "share": 0.0},
    ]
    assert ind["by_category"] == [
        {"category": "flood", "incidents": 1, "rerouted": 1, "share": 1.0},
        {"category": "graffiti", "incidents": 1, "rerouted": 0, "share": 0.0},
        {"category": "theft", "incidents": 1, "rerouted": 0, "share": 0.0},
    ]
    assert ind["refusals"] == [
        {"agency_id": "mairie-35401", "reason": "wrong_location", "refusals": 1},
        {"agency_id": "pm-35401", "reason": "not_competent", "refusals": 1},
        {"agency_id": "pm-35402", "reason": "duplicate", "refusals": 1},
    ]
    # a: first dispatch at routed_at, last re-routing 12 min later.
    assert ind["time_lost"] == [
        {"category": "flood", "incidents": 1, "lost_p50_s": 720.0, "lost_p90_s": 720.0,
         "lost_total_s": 720.0}]
    assert ind["escalations"] == [{"agency_id": "mairie-35401", "deadline": "ack", "escalations": 1}]
    assert "Time lost to re-routing" in text and "Refusals by reason" in text
