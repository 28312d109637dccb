"""Response deadlines: the rules in routing.yaml and the late counts on a real chDB store, by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from paths import ROOT
from pydantic import ValidationError
from sink_helpers import chdb_store, routed_incident

from veille.reads import deadlines
from veille.reads.indicators import Cell
from veille.schemas.models import DispatchTarget, IncidentCategory, Severity, StatusUpdate
from veille.sinks.rows import to_rows
from veille.territory import DeadlineRule, load_territory

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DOC = ROOT / "docs" / "indicators.md"


def test_the_document_describes_the_worked_example_checked_here() -> None:
    text = DOC.read_text()
    assert "## Response deadlines" in text and "tests/reads/test_deadlines.py" in text
    assert "acknowledged late 1 (b)" in text and "open beyond 3\u00d7 1 (b" in text


def test_first_matching_rule_wins_and_rules_are_checked() -> None:
    rules = load_territory().rules
    assert rules.deadline_for(IncidentCategory.flood, Severity.severe).id == "urgent"
    assert rules.deadline_for(IncidentCategory.flood, Severity.moderate).id == "climate"
    assert rules.deadline_for(IncidentCategory.graffiti, Severity.critical).id == "public-space"
    params = deadlines.deadline_params(rules)
    i = params["dl_keys"].index("flood|severe")
    assert (params["dl_ack"][i], params["dl_res"][i]) == (1800.0, 12 * 3600.0)
    assert len(params["dl_keys"]) == len(IncidentCategory) * len(Severity)  # the last rule matches all
    with pytest.raises(ValidationError):
        DeadlineRule(id="x", acknowledge_hours=5, resolve_hours=1)
    with pytest.raises(ValidationError):
        DeadlineRule(id="x", acknowledge_hours=0, resolve_hours=1)


def test_sql_binds_the_cell_the_rules_and_now() -> None:
    cell = Cell(municipalities=["35401"], start=date(2026, 3, 1), end=date(2026, 3, 11))
    sql, params = deadlines.overdue_sql("vdb", deadlines.cell_selection(), cell.params(),
                                        load_territory().rules, NOW)
    assert params["now"] == NOW and params["munis"] == ["35401"] and "flood|severe" in params["dl_keys"]
    assert "35401" not in sql and "flood" not in sql and "vdb.dispatches FINAL" in sql


def _incident(hours_ago: float, category: str, agency: str, severity: str = "severe"):  # type: ignore[no-untyped-def]
    reported = NOW - timedelta(hours=hours_ago)
    return routed_incident(0, base=NOW, municipality="35401", category=category, severity=severity,
                           reported_at=reported, occurred_at=reported,
                           routed_at=reported + timedelta(seconds=1),
                           dispatches=[DispatchTarget(agency_id=agency, service="fire_rescue", rule="r",
                                                      cross_boundary=False)])


def _status(inc, agency: str, status: str, after_hours: float) -> StatusUpdate:  # type: ignore[no-untyped-def]
    import uuid

    return StatusUpdate(id=uuid.uuid4(), incident_id=inc.id, agency_id=agency, status=status,
                        at=inc.reported_at + timedelta(hours=after_hours))


def test_late_counts_per_agency_and_category(tmp_path: Path) -> None:
    a = _incident(2, "flood", "sdis35")          # no answer, 2 h > 0.5 h: not acknowledged in time
    b = _incident(40, "flood", "sdis35")         # acked after 1 h (late), open 40 h > 12 h and > 3 x 12 h
    c = _incident(20, "flood", "sdis35")         # acked at 10 min, resolved after 13 h: resolved late
    f = _incident(50, "flood", "sdis35")         # rejected at 12 min: closed, never late
    d = _incident(10, "burglary", "pm-35401")    # only "received" (not an action), 10 h > 8 h
    e = _incident(100, "graffiti", "pm-35401", "minor")  # 100 h > 72 h, open but within 720 h
    g = _incident(1, "graffiti", "pm-35401", "minor")    # within every deadline
    records = [a, b, c, f, d, e, g,
               _status(b, "sdis35", "acknowledged", 1), _status(c, "sdis35", "acknowledged", 1 / 6),
               _status(c, "sdis35", "resolved", 13), _status(f, "sdis35", "rejected", 0.2),
               _status(d, "pm-35401", "received", 1),
               # Another agency's answer does not count for sdis35's dispatch of a.
               _status(a, "pm-35401", "acknowledged", 0.1)]
    cell = Cell(municipalities=["35401"], start=date(2026, 3, 1), end=date(2026, 3, 11))
    with chdb_store(tmp_path / "chdb") as store:
        for table, rows in to_rows(records, NOW).items():
            store.insert(table, rows, f"{table}|dl")
        result = deadlines.compute(store, cell, load_territory().rules, NOW)
        earlier = deadlines.compute(store, cell, load_territory().rules, NOW - timedelta(hours=39))
    rows = {(r["agency_id"], r["category"]): r for r in result["rows"]}
    assert rows[("sdis35", "flood")] == {
        "agency_id": "sdis35", "category": "flood", "dispatched": 4, "with_deadline": 4,
        "not_acknowledged": 1, "acknowledged_late": 1, "open_overdue": 1, "open_over_3x": 1,
        "resolved_late": 1}
    assert {k: rows[("pm-35401", "burglary")][k] for k in deadlines.COUNTS} == {
        "dispatched": 1, "with_deadline": 1, "not_acknowledged": 1, "acknowledged_late": 0,
        "open_overdue": 0, "open_over_3x": 0, "resolved_late": 0}
    assert {k: rows[("pm-35401", "graffiti")][k] for k in deadlines.COUNTS} == {
        "dispatched": 2, "with_deadline": 2, "not_acknowledged": 1, "acknowledged_late": 0,
        "open_overdue": 0, "open_over_3x": 0, "resolved_late": 0}
    assert result["now"] == "2026-03-10T12:00:00+00:00"
    # "Now" 39 h earlier: b was 1 h old and within its deadlines; a, d, g did not exist yet but
    # are still counted as dispatched (the cell is by report day), never late (negative ages).
    old = {(r["agency_id"], r["category"]): r for r in earlier["rows"]}
    assert old[("sdis35", "flood")]["open_overdue"] == 0 and old[("sdis35", "flood")]["not_acknowledged"] == 0
    assert "Response deadlines" in deadlines.render_text(result) and "sdis35" in deadlines.render_text(result)
