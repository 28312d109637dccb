"""Grouping indicators (veille/reads/cases.py) on a real chDB store and the known cases of
tests/case_helpers.py, with the exact numbers docs/indicators.md's worked example gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from case_helpers import Cases
from sink_helpers import chdb_store, now_ms

from veille.reads import cases as case_indicators
from veille.reads.indicators import Cell, compute, render_text
from veille.sinks.rows import to_rows


def test_case_indicators_on_known_cases(tmp_path: Path) -> None:
    known = Cases(now_ms().replace(hour=8, minute=0, second=0, microsecond=0) - timedelta(days=1))
    day = known.base.date()
    cell = Cell(municipalities=["35401", "35402", "35403"], start=day - timedelta(days=1),
                end=day + timedelta(days=2))
    with chdb_store(tmp_path / "chdb") as store:
        for table, rows in to_rows(known.records(), datetime.now(UTC)).items():
            if rows.num_rows:
                store.insert(table, rows, f"{table}|a")
        got = case_indicators.compute(store, cell)
        assert got["reports"] == {"total": 9, "grouped": 7, "share": 0.7778}
        # Cases A (a1, a2, a3), a4 (split out), B (b1, b2), C (c1): sizes 3, 1, 2, 1.
        assert got["reports_per_case"] == {"cases": 4, "mean": 1.75, "median": 2, "max": 3}
        assert got["by_category"] == [{"category": "blocked_drain", "cases": 1, "reports": 2},
                                      {"category": "flash_flood", "cases": 2, "reports": 4},
                                      {"category": "flood", "cases": 1, "reports": 1}]
        # A: 480 s (pm-35402 on a2, before siba on a1), B: 1800 s; C and a4 never acknowledged.
        assert got["first_ack"] == {"cases": 4, "acknowledged": 2, "p50_s": 1800.0, "p90_s": 1800.0}
        assert got["by_agency"] == [
            {"agency_id": "pm-35401", "dispatches": 2, "updates": 1, "splits": 0, "update_share": 0.3333},
            {"agency_id": "pm-35402", "dispatches": 2, "updates": 1, "splits": 0, "update_share": 0.3333},
            {"agency_id": "siba", "dispatches": 2, "updates": 3, "splits": 1, "update_share": 0.6},
            {"agency_id": "st-35403", "dispatches": 1, "updates": 1, "splits": 0, "update_share": 0.5},
        ]
        # A cell holding 35402 alone: case A is counted whole (3 reports, two municipalities).
        east = case_indicators.compute(store, cell.model_copy(update={"municipalities": ["35402"]}))
        assert east["reports"] == {"total": 3, "grouped": 2, "share": 0.6667}  # a2, a4, u2
        assert east["reports_per_case"] == {"cases": 2, "mean": 2.0, "median": 3, "max": 3}
        # Part of every indicator output.
        everything = compute(store, cell)
        assert everything["cases"] == got
        assert "Reports per case" in render_text(everything)


def test_no_cases_gives_none(tmp_path: Path) -> None:
    today = datetime.now(UTC).date()
    with chdb_store(tmp_path / "chdb") as store:
        cell = Cell(municipalities=["35401"], start=today, end=today + timedelta(days=1))
        got = case_indicators.compute(store, cell)
    assert got["reports"] == {"total": 0, "grouped": 0, "share": None}
    assert got["reports_per_case"] == {"cases": 0, "mean": None, "median": None, "max": None}
    assert got["first_ack"] == {"cases": 0, "acknowledged": 0, "p50_s": None, "p90_s": None}
