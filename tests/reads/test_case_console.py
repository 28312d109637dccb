"""Cases in the console on a real chDB store and the known cases of tests/case_helpers.py: the
map's cases (show=cases in the URL), a case's page (reports, bodies' statuses, no personal
data), the annual report's grouping table under the small-count rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from case_helpers import Cases
from sink_helpers import now_ms

from veille.reads.console.case import build_case, case_html, shown_severity
from veille.reads.console.export import export_rows
from veille.reads.console.filters import parse_filter
from veille.reads.console.pages import report_html
from veille.reads.console.report import build_report
from veille.reads.console.view import build_view
from veille.schemas.models import IncidentCategory
from veille.sinks.rows import to_rows
from veille.sinks.store import ChdbStore
from veille.territory import load_territory


def stored(path: Path, cases: Cases) -> ChdbStore:
    store = ChdbStore(path, "veille")
    store.migrate()
    for table, rows in to_rows(cases.records(), datetime.now(UTC)).items():
        if rows.num_rows:
            store.insert(table, rows, f"{table}|a")
    return store


def test_map_cases_and_case_page(tmp_path: Path) -> None:
    cases = Cases(now_ms() - timedelta(hours=3))
    territory = load_territory()
    store = stored(tmp_path / "chdb", cases)
    try:
        today = datetime.now(UTC).date()
        qs = {"from": (today - timedelta(days=2)).isoformat(), "to": (today + timedelta(days=2)).isoformat()}
        reports = build_view(store, territory, parse_filter(qs))
        assert reports["cases"] == [] and reports["grid"]["cells"]  # the default: reports
        f = parse_filter({**qs, "show": "cases"})
        assert f.query()["show"] == "cases"  # in the URL the page writes
        view = build_view(store, territory, f)
        got = {c["id"]: c for c in view["cases"]}
        assert set(got) == {str(cases.a1), str(cases.a4), str(cases.b1), str(cases.c1)}
        a = got[str(cases.a1)]
        assert (a["reports"], a["municipalities"], a["category"], a["acknowledged"]) == \
            (3, ["35401", "35402"], "flash_flood", True)
        assert (a["lat"], a["lon"]) == (48.105, -1.695)  # the grid cell's centre, never a stored point
        assert [c["reports"] for c in view["cases"]] == [3, 2, 1, 1]  # the largest first
        # A filter on one channel selects the cases of those reports, each whole.
        phone = build_view(store, territory, parse_filter({**qs, "show": "cases", "channel": "phone"}))
        assert {c["id"]: c["reports"] for c in phone["cases"]} == {str(cases.a1): 3, str(cases.c1): 1}
        with pytest.raises(ValueError):
            parse_filter({**qs, "show": "everything"})

        data = build_case(store, cases.a1, territory)
        assert data is not None
        assert (data["reports"], data["state"], data["severity"]) == (3, "on_site", "severe")
        rows = data["report_rows"]
        assert [r["id"] for r in rows] == [str(i) for i in (cases.a1, cases.a2, cases.a3, cases.a4)]
        assert [(r["first"], r["split_out"]) for r in rows] == [(True, False), (False, False), (False, False),
                                                                (False, True)]
        bodies = {b["agency_id"]: (b["dispatches"], b["updates"], b["status"]) for b in data["bodies"]}
        # a4 left the case: its update to the syndicate and pm-35402 no longer counts here.
        assert bodies == {"siba": (1, 2, "on_site"), "pm-35401": (1, 1, None),
                          "pm-35402": (1, 0, "acknowledged")}
        page = case_html(data, territory)
        assert "Intervention en cours" in page and "séparé (dossier à part)" in page
        assert f'case?id={cases.a4}' in page
        for private in ("ps-", "48.1", "-1.7"):  # no pseudonym, no position
            assert private not in page
        split = build_case(store, cases.a4, territory)
        assert split is not None and (split["reports"], split["split"]) == (1, True)
        assert build_case(store, cases.u1, territory) is None  # never grouped: not a case
        # export.csv names the case each report counts in now: a4 its own once split out.
        exported = {r["id"]: r["case_id"] for r in export_rows(store, territory, parse_filter(qs))}
        assert {i: exported[str(i)] for i in (cases.a2, cases.a4, cases.b2, cases.u1)} == {
            cases.a2: str(cases.a1), cases.a4: str(cases.a4), cases.b2: str(cases.b1), cases.u1: ""}
    finally:
        store.close()


def test_annual_report_grouping_table(tmp_path: Path) -> None:
    """35401's year: few cases, so every count is "< 5" and no mean, median or time is shown."""
    cases = Cases(now_ms() - timedelta(hours=3))
    store = stored(tmp_path / "chdb", cases)
    try:
        data = build_report(store, load_territory(), "35401", cases.base.year)
    finally:
        store.close()
    got = dict(data["cases"])
    assert got["reports_grouped"] == "< 5" and got["cases"] == "< 5"
    not_shown = (got["grouped_share"], got["mean_reports"], got["median_reports"], got["first_ack_p50"])
    assert not_shown == ("n.d.",) * 4
    page = report_html(data)
    assert "Signalements regroupés en dossiers" in page and 'id="report-cases"' in page


def test_a_case_shows_the_severity_its_size_raised() -> None:
    """The store keeps each report's own severity; the console shows the case's as the grouper
    raised it: flash floods are severe from 20 reports (the example territory's rule)."""
    territory = load_territory()
    rule = territory.rules.grouping.rule_for(IncidentCategory.flash_flood)
    assert rule is not None and rule.severe_at == 20
    assert shown_severity(territory, "flash_flood", "moderate", 19) == "moderate"
    assert shown_severity(territory, "flash_flood", "moderate", 20) == "severe"
    assert shown_severity(territory, "flash_flood", "critical", 20) == "critical"  # never lowered
    assert shown_severity(territory, "a_future_category", "minor", 500) == "minor"  # as stored
