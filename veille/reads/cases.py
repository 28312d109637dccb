"""Grouping indicators of a cell (docs/indicators.md, "Cases: grouped reports").

Read from the views of migration 0008: ``case_reports`` (every report with the case it counts in
now, ``case_of``) and ``cases`` (one row per case), ``dispatches`` and ``case_splits``; every
event table is read FINAL (replay-proof). The reports of a cell are chosen as everywhere
(``cell_selection``: declared municipality in the cell, reported on a local day of the period);
the cell's **cases** are the cases of its grouped reports, each counted whole (a case spanning two
municipalities, one of them outside the cell, counts all its reports). A report split out of its
case is a case of one from then on.

* ``reports``: the cell's reports, those grouped into a case, and their share;
* ``reports_per_case``: over the cell's cases, mean, median (``quantileExact``) and max reports;
* ``by_category``: per category (the case's first report's), the cases and their reports;
* ``first_ack``: seconds from a case's first report to the first action of any body on any of
  its dispatches: the cases, those acknowledged, p50 and p90 (``quantilesExact``) over those;
* ``by_agency``: per body, over the cell's reports, the dispatches it received, the updates of a
  case it received instead, and the reports it split out of a case.
"""

from __future__ import annotations

from typing import Any

from veille.reads.cell import Cell, Query, cell_selection, quantile_seconds, share, text_table
from veille.sinks.store import Store


def _cell_cases(db: str) -> str:
    return f"SELECT case_of FROM {db}.case_reports WHERE grouped AND {cell_selection()}"


def reports_sql(db: str, cell: Cell) -> Query:
    return (f"""
SELECT toUInt64(count()) AS reports, toUInt64(countIf(grouped)) AS grouped
FROM {db}.case_reports WHERE {cell_selection()}""", cell.params())


def per_case_sql(db: str, cell: Cell) -> Query:
    ack = "(toUnixTimestamp64Milli(first_acknowledged_at) - toUnixTimestamp64Milli(first_report_at)) / 1000"
    return (f"""
SELECT toUInt64(count()) AS cases,
       avg(reports) AS mean_reports, quantileExact(0.5)(reports) AS median_reports,
       toUInt64(max(reports)) AS max_reports,
       toUInt64(countIf(first_acknowledged_at IS NOT NULL)) AS acknowledged,
       quantilesExactIf(0.5, 0.9)(greatest(0, ifNull({ack}, 0)), first_acknowledged_at IS NOT NULL) AS ack_q
FROM {db}.cases WHERE case_id IN ({_cell_cases(db)})""", cell.params())


def by_category_sql(db: str, cell: Cell) -> Query:
    return (f"""
SELECT category, toUInt64(count()) AS cases, toUInt64(sum(reports)) AS reports
FROM {db}.cases WHERE case_id IN ({_cell_cases(db)})
GROUP BY category ORDER BY category""", cell.params())


def by_agency_sql(db: str, cell: Cell) -> Query:
    return (f"""
SELECT agency_id, toUInt64(sum(d)) AS dispatches, toUInt64(sum(u)) AS updates, toUInt64(sum(s)) AS splits
FROM
(
    SELECT agency_id, uniqExact(event_id) AS d, 0 AS u, 0 AS s FROM {db}.dispatches FINAL
    WHERE event_type = 'incident' AND {cell_selection()} GROUP BY agency_id
    UNION ALL
    SELECT agency_id, 0 AS d, uniqExact(id) AS u, 0 AS s FROM {db}.incidents FINAL
    ARRAY JOIN update_agencies AS agency_id WHERE {cell_selection()} GROUP BY agency_id
    UNION ALL
    SELECT s.agency_id AS agency_id, 0 AS d, 0 AS u, uniqExact(s.incident_id) AS s
    FROM {db}.case_splits AS s FINAL
    INNER JOIN (SELECT id FROM {db}.incidents FINAL WHERE {cell_selection()}) AS i ON s.incident_id = i.id
    GROUP BY agency_id
)
GROUP BY agency_id ORDER BY agency_id""", cell.params())


def compute(store: Store, cell: Cell) -> dict[str, Any]:
    db = store.database
    (rep,) = store.query(*reports_sql(db, cell))
    (per,) = store.query(*per_case_sql(db, cell))
    n_cases, acked = int(per["cases"]), int(per["acknowledged"])
    reports, grouped = int(rep["reports"]), int(rep["grouped"])
    return {
        "reports": {"total": reports, "grouped": grouped, "share": share(grouped, reports)},
        "reports_per_case": {
            "cases": n_cases,
            "mean": round(float(per["mean_reports"]), 3) if n_cases else None,
            "median": int(per["median_reports"]) if n_cases else None,
            "max": int(per["max_reports"]) if n_cases else None,
        },
        "by_category": [{"category": r["category"], "cases": int(r["cases"]), "reports": int(r["reports"])}
                        for r in store.query(*by_category_sql(db, cell))],
        "first_ack": {"cases": n_cases, "acknowledged": acked,
                      "p50_s": quantile_seconds(per["ack_q"], 0, acked),
                      "p90_s": quantile_seconds(per["ack_q"], 1, acked)},
        "by_agency": [{"agency_id": r["agency_id"], "dispatches": int(r["dispatches"]),
                       "updates": int(r["updates"]), "splits": int(r["splits"]),
                       "update_share": share(int(r["updates"]), int(r["dispatches"]) + int(r["updates"]))}
                      for r in store.query(*by_agency_sql(db, cell))],
    }


def render_text(ind: dict[str, Any]) -> str:
    rep, per, ack = ind["reports"], ind["reports_per_case"], ind["first_ack"]
    return "\n\n".join([
        text_table("Reports grouped into cases", ["reports", "grouped", "share"],
                   [[rep["total"], rep["grouped"], rep["share"]]]),
        text_table("Reports per case", ["cases", "mean", "median", "max"],
                   [[per["cases"], per["mean"], per["median"], per["max"]]]),
        text_table("Cases per category", ["category", "cases", "reports"],
                   [[r["category"], r["cases"], r["reports"]] for r in ind["by_category"]]),
        text_table("First report to first acknowledgement, per case (seconds)",
                   ["cases", "acknowledged", "p50", "p90"],
                   [[ack["cases"], ack["acknowledged"], ack["p50_s"], ack["p90_s"]]]),
        text_table("Dispatches and case updates received, per body",
                   ["agency", "dispatches", "updates", "splits", "update_share"],
                   [[r["agency_id"], r["dispatches"], r["updates"], r["splits"], r["update_share"]]
                    for r in ind["by_agency"]]),
    ])


__all__ = ["by_agency_sql", "by_category_sql", "compute", "per_case_sql", "render_text", "reports_sql"]
