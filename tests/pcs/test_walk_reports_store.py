"""Reports born from walks and their processing time, computed from the store (chDB, migration
0007): the prevention event's report ids joined with the incidents and their status events."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sink_helpers import chdb_store, routed_incident, status_update

from veille.config import Settings
from veille.pcs import events as e
from veille.pcs.prevention import PreventionAction
from veille.reads.pcs import prevention_indicators, walk_report_times
from veille.sinks.rows import to_rows
from veille.territory import load_territory

T0 = datetime(2026, 5, 4, 10, tzinfo=UTC)


def action(id: str, kind: str, day: date, reports: list[str]) -> e.PreventionEvent:
    return e.PreventionEvent(
        at=int(T0.timestamp() * 1000), report_ids=tuple(reports), action=PreventionAction(
            id=id, municipality="35401", kind=kind, date=day, area="Gare", participants={"residents": 8}))


def test_walk_reports_joined_with_incidents_and_their_statuses(tmp_path: Path) -> None:
    incs = [routed_incident(i, base=T0 + timedelta(minutes=120), municipality="35401",
                            channel="neighbourhood_representative") for i in range(5)]
    a, b, c, d, other = incs
    # a: resolved 10 h after its report (acknowledged first); b: resolved after 30 h, twice (the
    # first resolution counts); c: resolved after 2 h; d: still open; other: born from a meeting.
    statuses = [status_update(a, "acknowledged", 60), status_update(a, "resolved", 600),
                status_update(b, "resolved", 1800), status_update(b, "resolved", 3000),
                status_update(c, "resolved", 120), status_update(other, "resolved", 1)]
    evs = [action("w1", "exploratory_walk", date(2026, 5, 4), [str(a.id), str(b.id)]),
           action("w2", "exploratory_walk", date(2026, 6, 30), [str(c.id), str(d.id), "never-stored"]),
           action("m1", "neighbourhood_meeting", date(2026, 5, 5), [str(other.id)]),
           action("w3", "exploratory_walk", date(2025, 1, 5), [str(a.id)])]  # outside the period
    tables = to_rows([*incs, *statuses, *evs], datetime.now(UTC))
    territory = load_territory(Settings().territory_dir)
    with chdb_store(tmp_path / "chdb") as store:
        for name in ("incidents", "status_events", "prevention_actions"):
            store.insert(name, tables[name], f"{name}|1")
        times = walk_report_times(store, ["35401"], date(2026, 1, 1), date(2027, 1, 1))
        got = prevention_indicators(store, territory, "35401", date(2026, 1, 1), date(2027, 1, 1))
        elsewhere = walk_report_times(store, ["35402"], date(2026, 1, 1), date(2027, 1, 1))
    hours = {(t.action_id, None if t.resolved_at is None
              else (t.resolved_at - t.reported_at).total_seconds() / 3600) for t in times}
    assert hours == {("w1", 10.0), ("w1", 30.0), ("w2", 2.0), ("w2", None)}
    # Four reports stored (the unknown id is not one yet), three resolved: median of 2, 10, 30.
    assert got["walk_reports"] == {"reports": 4, "resolved": 3, "median_processing_hours": 10.0}
    assert elsewhere == []


def test_annual_report_shows_walk_reports_under_the_small_count_rules() -> None:
    from veille.reads.console.pages import report_html
    from veille.reads.console.report import NOT_SHOWN, SUPPRESSED, walk_reports_section

    few = walk_reports_section({"reports": 4, "resolved": 3, "median_processing_hours": 10.0})
    assert few == {"reports": SUPPRESSED, "resolved": SUPPRESSED, "median": NOT_SHOWN}
    many = walk_reports_section({"reports": 12, "resolved": 9, "median_processing_hours": 26.5})
    assert many == {"reports": "12", "resolved": "9", "median": "26,5\u00a0h"}
    data = {"year": 2026, "name": "Montveille", "municipality": "35401", "total": "< 5", "alerts": "< 5",
            "by_category": [], "by_channel": [], "by_month": ["< 5"] * 12,
            "cross_boundary": {"dispatches": "< 5", "cross": "< 5", "share": NOT_SHOWN},
            "by_agency": [], "response_times": [], "delivery": [], "walk_reports": many}
    html = report_html(data)
    assert 'id="report-walk-reports"' in html and ">12<" in html and "26,5\u00a0h" in html
