"""Monitoring-cell indicators: SQL builders (pure) and exact values on a real chDB store."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sink_helpers import (
    chdb_store,
    delivery_receipt,
    now_ms,
    routed_alert,
    routed_incident,
    status_update,
    today_cell,
)

from veille.reads import delivery
from veille.reads.indicators import (
    Cell,
    alerts_sql,
    compute,
    cross_boundary_sql,
    open_incidents_sql,
    parse_cell,
    render_text,
    reports_sql,
    response_times_sql,
)
from veille.schemas.models import DispatchTarget
from veille.sinks.rows import to_rows


def test_cell_validation_and_parsing() -> None:
    cell = Cell(municipalities=["35402", "35401", "35401"], start=date(2026, 1, 1), end=date(2026, 2, 1))
    assert cell.municipalities == ["35401", "35402"]
    with pytest.raises(ValidationError):
        Cell(municipalities=["3540"], start=date(2026, 1, 1), end=date(2026, 2, 1))
    with pytest.raises(ValidationError):
        Cell(municipalities=["35401"], start=date(2026, 2, 1), end=date(2026, 2, 1))
    with pytest.raises(ValidationError):
        Cell(municipalities=[], start=date(2026, 1, 1), end=date(2026, 2, 1))
    parsed = parse_cell("municipalities=35401,2A004&from=2026-01-01&to=2026-01-08")
    assert parsed.municipalities == ["2A004", "35401"] and parsed.end == date(2026, 1, 8)
    with pytest.raises(ValueError):
        parse_cell("municipalities=35401&from=2026-01-01")


def test_sql_builders_bind_parameters_and_read_replay_proof_sources() -> None:
    cell = Cell(municipalities=["35401"], start=date(2026, 1, 1), end=date(2026, 2, 1))
    for build in (reports_sql, cross_boundary_sql, response_times_sql, open_incidents_sql, alerts_sql):
        sql, params = build("vdb", cell)
        assert params == {"munis": ["35401"], "start": date(2026, 1, 1), "end": date(2026, 2, 1)}
        assert "{munis:Array(String)}" in sql and "{start:Date}" in sql and "35401" not in sql
        assert "vdb." in sql
    assert "uniqExactMerge" in reports_sql("vdb", cell)[0]
    assert "incidents FINAL" in response_times_sql("vdb", cell)[0]
    assert "dispatches FINAL" in open_incidents_sql("vdb", cell)[0]
    assert "status = 'Actual'" in alerts_sql("vdb", cell)[0]
    for build in (delivery.by_agency_method_sql, delivery.oldest_undelivered_sql):
        sql, params = build("vdb", cell)
        assert params == cell.params() and "35401" not in sql
        assert "vdb.delivery_receipts FINAL" in sql and "vdb.dispatches FINAL" in sql
    # The console's agency filter is a bound parameter too.
    where = delivery.selection("vdb", "{agency:String} = '' OR agency_id = {agency:String}")
    assert "{agency:String}" in delivery.stuck_select("vdb", where) and "LIMIT 20 BY agency_id" in \
        delivery.stuck_select("vdb", where)


def test_indicators_values(tmp_path: Path) -> None:
    base = now_ms()
    a = routed_incident(0, base=base, municipality="35401", channel="app")
    b = routed_incident(1, base=base, municipality="35401", channel="phone", category="theft")
    c = routed_incident(2, base=base, municipality="35402", channel="app", category="flood", dispatches=[
        DispatchTarget(agency_id="sdis35", service="fire_rescue", rule="fire", cross_boundary=True)])
    outside = routed_incident(3, base=base, municipality="35999")  # not in the cell
    records = [
        a, b, c, outside,
        status_update(a, "received", 1), status_update(a, "acknowledged", 10),
        status_update(a, "resolved", 60),
        status_update(b, "on_site", 20),
        status_update(c, "acknowledged", 30), status_update(c, "resolved", 90),
        status_update(c, "reopened", 100),
        routed_alert(1, ["35401", "35402"]), routed_alert(2, ["35401"]),
        routed_alert(3, ["35401"], status="Exercise"),
        # sdis35's webhook: one dispatch delivered at the second attempt, one refused (failed).
        delivery_receipt(a.id, outcome="retry", status_code=503, at=base, latency_ms=1000),
        delivery_receipt(a.id, attempt=2, at=base + timedelta(seconds=4), latency_ms=1000),
        delivery_receipt(c.id, outcome="failed", status_code=400, reply="Bad Request", at=base),
    ]
    cell = Cell(municipalities=["35401", "35402"], start=today_cell().start, end=today_cell().end)
    with chdb_store(tmp_path / "chdb") as store:
        for table, rows in to_rows(records, base).items():
            store.insert(table, rows, f"{table}|x")
        ind = compute(store, cell)
        empty = compute(store, Cell(municipalities=["35401"], start=date(2025, 1, 1), end=date(2025, 1, 2)))

    rep = ind["reports"]
    assert rep["total"] == 3
    assert rep["by_municipality"] == {"35401": 2, "35402": 1}
    assert rep["by_channel"] == {"app": 2, "phone": 1}
    assert rep["channel_share"] == {"app": 0.6667, "phone": 0.3333}
    assert rep["by_category"] == {"flood": 2, "theft": 1}

    cb = ind["cross_boundary"]
    # a: pm-35401 + sdis35 (cross, i=0); b: pm-35401 + sdis35 (not cross, i=1); c: sdis35 (cross)
    assert (cb["dispatches"], cb["cross_boundary"], cb["share"]) == (5, 2, 0.4)
    assert cb["by_agency"] == [
        {"agency_id": "pm-35401", "dispatches": 2, "cross_boundary": 0, "share": 0.0},
        {"agency_id": "sdis35", "dispatches": 3, "cross_boundary": 2, "share": 0.6667},
    ]
    assert {r["municipality"]: r["share"] for r in cb["by_municipality"]} == {"35401": 0.25, "35402": 1.0}

    # sdis35 acted on a (10 min), b (20 min, on_site), c (30 min); resolved a (60) and c (90).
    assert ind["response_times"] == [{
        "agency_id": "sdis35", "incidents": 3, "acknowledged": 3,
        "ack_p50_s": 1200.0, "ack_p90_s": 1800.0,
        "resolved": 2, "resolve_p50_s": 5400.0, "resolve_p90_s": 5400.0,
    }]
    # Open: pm-35401 never reported (2 open); sdis35 closed a, c was reopened, b on site.
    assert ind["open_incidents"] == [
        {"agency_id": "pm-35401", "dispatched": 2, "open": 2},
        {"agency_id": "sdis35", "dispatched": 3, "open": 2},
    ]
    assert ind["alerts"]["total_by_municipality"] == {"35401": 2, "35402": 1}
    (webhook,) = ind["delivery"]["by_agency_method"]
    # a: first attempt started 1 s before `base`, delivered at base + 4 s -> 5 s.
    assert webhook | {"failing_since": None} == {
        "agency_id": "sdis35", "method": "webhook", "dispatches": 2, "delivered": 1, "pending": 0,
        "failed": 1, "disabled": 0, "undelivered": 0, "delivery_p50_s": 5.0, "delivery_p90_s": 5.0,
        "failing_since": None, "undelivered_since": None}
    assert webhook["failing_since"] is not None and ind["delivery"]["oldest_undelivered"] == []
    json.dumps(ind)  # JSON-able

    text = render_text(ind)
    assert "Monitoring cell 35401, 35402" in text and "66.7%" in text and "sdis35" in text
    assert "Delivery to the bodies" in text and "Oldest undelivered dispatch per agency" in text
    assert empty["reports"]["total"] == 0 and empty["cross_boundary"]["share"] is None
    assert "(none)" in render_text(empty)
