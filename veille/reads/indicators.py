"""Monitoring-cell indicators: a cell is a set of municipalities (INSEE codes) over [from, to).

Each indicator of docs/indicators.md is defined here once, for the CLI (``veille indicators``), the
HTTP API (/indicators), the annual report and the console; the console applies its filters to the
same definitions (``response_times_select``, ``cross_boundary_select``, ``CLOSED_STATUSES``). The
delivery indicators are ``veille.reads.delivery``'s, included in ``compute``; the cell itself and
the helpers every indicator shares are in ``veille.reads.cell`` (re-exported here).
SQL builders are pure (``(sql, params)``, tested without a store); ``compute`` runs them on
any ``Store`` and returns a JSON-able dict; ``render_text`` prints it for humans.
Days are local days (Europe/Paris), ``to`` is exclusive. Every read is replay-proof: the
daily views hold idempotent aggregates (uniqExact/min/argMax) and event tables are read FINAL.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from veille.reads import cases, delivery, rerouting
from veille.reads.cell import (
    LOCAL_TZ,
    Cell,
    Query,
    cell_selection,
    insee_codes,
    parse_cell,
    quantile_seconds,
    share,
    text_table,
)
from veille.sinks.store import Store

CLOSED_STATUSES = ("resolved", "rejected")


def reports_sql(db: str, cell: Cell) -> Query:
    return (f"""
SELECT municipality, category, channel, toUInt64(uniqExactMerge(reports)) AS reports
FROM {db}.reports_daily
WHERE has({{munis:Array(String)}}, municipality) AND day >= {{start:Date}} AND day < {{end:Date}}
GROUP BY municipality, category, channel
ORDER BY municipality, category, channel""", cell.params())


def reports_by_month_sql(db: str, cell: Cell) -> Query:
    """Reports per calendar month of the cell's period (the annual report's months)."""
    return (f"""
SELECT toMonth(day) AS month, toUInt64(uniqExactMerge(reports)) AS reports
FROM {db}.reports_daily
WHERE has({{munis:Array(String)}}, municipality) AND day >= {{start:Date}} AND day < {{end:Date}}
GROUP BY month ORDER BY month""", cell.params())


# The cross-boundary indicator counts (incident, agency) pairs of incident dispatches, and those of
# them flagged cross-boundary, as these two uniqExact states (one pair for two services; alert
# dispatches never count). Migration 0002's dispatch_daily_mv stores the same states per local day.
DISPATCH_STATES = """uniqExactState(event_id) AS dispatches,
       uniqExactState(if(cross_boundary, event_id, NULL)) AS cross_boundary"""


def cross_boundary_select(states: str) -> str:
    """The cross-boundary indicator, its one definition: per agency and declared municipality, the
    dispatches and cross-boundary dispatches merged from ``states`` (a query of ``agency_id,
    municipality`` and the two states of ``DISPATCH_STATES``)."""
    return f"""
SELECT agency_id, municipality,
       toUInt64(uniqExactMerge(dispatches)) AS dispatches,
       toUInt64(uniqExactMerge(cross_boundary)) AS cross_boundary
FROM ({states}
)
GROUP BY agency_id, municipality
ORDER BY agency_id, municipality"""


def dispatch_states(db: str, where: str) -> str:
    """The states of ``cross_boundary_select`` over the incident dispatches ``where`` selects (the
    console's filters, which the daily view cannot apply)."""
    return f"""
    SELECT agency_id, municipality, {DISPATCH_STATES}
    FROM {db}.dispatches FINAL
    WHERE event_type = 'incident' AND ({where})
    GROUP BY agency_id, municipality"""


def cross_boundary_sql(db: str, cell: Cell) -> Query:
    """A cell's from the daily view, which keeps the counts after the incidents' rows expire."""
    return cross_boundary_select(f"""
    SELECT agency_id, municipality, dispatches, cross_boundary FROM {db}.dispatch_daily
    WHERE has({{munis:Array(String)}}, municipality) AND day >= {{start:Date}} AND day < {{end:Date}}"""
                                 ), cell.params()


def _cell_incidents(db: str) -> str:
    return f"""
    SELECT id, reported_at FROM {db}.incidents FINAL
    WHERE {cell_selection()}"""


def response_times_select(db: str, incidents: str, lifecycle_where: str = "") -> str:
    """Per agency, over the incidents of ``incidents`` (a query of ``id, reported_at``) it
    answered: seconds from the report to its first action and to its first resolution, p50
    and p90. The one definition of the indicator; the console adds its filters."""
    ack = "(toUnixTimestamp64Milli(l.acknowledged_at) - toUnixTimestamp64Milli(i.reported_at)) / 1000"
    res = "(toUnixTimestamp64Milli(l.resolved_at) - toUnixTimestamp64Milli(i.reported_at)) / 1000"
    where = f"WHERE {lifecycle_where}" if lifecycle_where else ""
    return f"""
SELECT l.agency_id AS agency_id,
       count() AS incidents,
       countIf(l.acknowledged_at IS NOT NULL) AS acknowledged,
       quantilesExactIf(0.5, 0.9)(greatest(0, ifNull({ack}, 0)), l.acknowledged_at IS NOT NULL) AS ack_q,
       countIf(l.resolved_at IS NOT NULL) AS resolved,
       quantilesExactIf(0.5, 0.9)(greatest(0, ifNull({res}, 0)), l.resolved_at IS NOT NULL) AS resolve_q
FROM
(
    SELECT incident_id, agency_id,
           minMerge(acknowledged_at) AS acknowledged_at, minMerge(resolved_at) AS resolved_at
    FROM {db}.incident_lifecycle
    {where}
    GROUP BY incident_id, agency_id
) AS l
INNER JOIN ({incidents}
) AS i ON l.incident_id = i.id
GROUP BY agency_id
ORDER BY agency_id"""


def response_times_sql(db: str, cell: Cell) -> Query:
    """Seconds from report to an agency's first action / first resolution, p50 and p90."""
    return response_times_select(db, _cell_incidents(db)), cell.params()


def open_incidents_sql(db: str, cell: Cell) -> Query:
    """Per agency: incidents of the cell/period dispatched to it, and those it has not closed yet."""
    return (f"""
SELECT d.agency_id AS agency_id,
       count() AS dispatched,
       countIf(s.status NOT IN {CLOSED_STATUSES!r}) AS open
FROM
(
    SELECT DISTINCT event_id, agency_id FROM {db}.dispatches FINAL
    WHERE event_type = 'incident' AND {cell_selection()}
) AS d
LEFT JOIN
(
    SELECT toString(incident_id) AS event_id, agency_id, argMaxMerge(latest_status) AS status
    FROM {db}.incident_lifecycle
    GROUP BY incident_id, agency_id
) AS s ON s.event_id = d.event_id AND s.agency_id = d.agency_id
GROUP BY agency_id
ORDER BY agency_id""", cell.params())


def alerts_sql(db: str, cell: Cell) -> Query:
    """Actual alerts only (CAP Test/Exercise/Draft are not events of the territory)."""
    return (f"""
SELECT municipality, severity, toUInt64(uniqExactMerge(alerts)) AS alerts
FROM {db}.alerts_daily
WHERE has({{munis:Array(String)}}, municipality) AND day >= {{start:Date}} AND day < {{end:Date}}
  AND status = 'Actual'
GROUP BY municipality, severity
ORDER BY municipality, severity""", cell.params())


def response_times(row: dict[str, Any]) -> dict[str, Any]:
    """One agency's row of ``response_times_select``, in seconds (None without answers)."""
    acked, resolved = int(row["acknowledged"]), int(row["resolved"])
    ack, res = row["ack_q"], row["resolve_q"]
    return {"agency_id": row["agency_id"], "incidents": int(row["incidents"]), "acknowledged": acked,
            "ack_p50_s": quantile_seconds(ack, 0, acked), "ack_p90_s": quantile_seconds(ack, 1, acked),
            "resolved": resolved, "resolve_p50_s": quantile_seconds(res, 0, resolved),
            "resolve_p90_s": quantile_seconds(res, 1, resolved)}


def cross_boundary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The rows of ``cross_boundary_select`` → the totals, their share, per agency and per municipality."""
    per_agency: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_muni: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        for acc in (per_agency[r["agency_id"]], per_muni[r["municipality"]]):
            acc[0] += int(r["dispatches"])
            acc[1] += int(r["cross_boundary"])
    all_dispatches = sum(v[0] for v in per_agency.values())
    all_cross = sum(v[1] for v in per_agency.values())
    return {
        "dispatches": all_dispatches,
        "cross_boundary": all_cross,
        "share": share(all_cross, all_dispatches),
        "by_agency": [{"agency_id": a, "dispatches": d, "cross_boundary": c, "share": share(c, d)}
                      for a, (d, c) in sorted(per_agency.items())],
        "by_municipality": [{"municipality": m, "dispatches": d, "cross_boundary": c,
                             "share": share(c, d)} for m, (d, c) in sorted(per_muni.items())],
    }


def compute(store: Store, cell: Cell) -> dict[str, Any]:
    db = store.database
    reports = store.query(*reports_sql(db, cell))
    total = sum(int(r["reports"]) for r in reports)
    by: dict[str, dict[str, int]] = {k: defaultdict(int) for k in ("municipality", "category", "channel")}
    for r in reports:
        for k in by:
            by[k][r[k]] += int(r["reports"])

    cross = cross_boundary(store.query(*cross_boundary_sql(db, cell)))
    times = [response_times(r) for r in store.query(*response_times_sql(db, cell))]
    open_rows = [{"agency_id": r["agency_id"], "dispatched": int(r["dispatched"]), "open": int(r["open"])}
                 for r in store.query(*open_incidents_sql(db, cell))]
    alerts = store.query(*alerts_sql(db, cell))
    alerts_by_muni: dict[str, int] = defaultdict(int)
    for r in alerts:
        alerts_by_muni[r["municipality"]] += int(r["alerts"])

    return {
        "cell": {"municipalities": cell.municipalities, "from": cell.start.isoformat(),
                 "to": cell.end.isoformat()},
        "reports": {
            "total": total,
            "by_municipality": dict(sorted(by["municipality"].items())),
            "by_category": dict(sorted(by["category"].items())),
            "by_channel": dict(sorted(by["channel"].items())),
            # Participation: which channels people actually use to report.
            "channel_share": {c: share(n, total) for c, n in sorted(by["channel"].items())},
            "rows": [{k: (int(v) if k == "reports" else v) for k, v in r.items()} for r in reports],
        },
        "cross_boundary": cross,
        "response_times": times,
        "open_incidents": open_rows,
        "alerts": {
            "total_by_municipality": dict(sorted(alerts_by_muni.items())),
            "rows": [{k: (int(v) if k == "alerts" else v) for k, v in r.items()} for r in alerts],
        },
        "delivery": delivery.compute(store, cell),
        "rerouting": rerouting.compute(store, cell),
        "cases": cases.compute(store, cell),
    }


def render_text(ind: dict[str, Any]) -> str:
    c = ind["cell"]
    rep = ind["reports"]
    cb = ind["cross_boundary"]
    parts = [
        f"Monitoring cell {', '.join(c['municipalities'])}  [{c['from']} .. {c['to']})",
        f"Reports: {rep['total']}   cross-boundary dispatches: {cb['cross_boundary']}/{cb['dispatches']}"
        + (f" ({cb['share']:.1%})" if cb["share"] is not None else ""),
        # The full municipality x category x channel breakdown is in the JSON output.
        text_table("Reports per municipality", ["municipality", "reports"],
                   [[m, n] for m, n in rep["by_municipality"].items()]),
        text_table("Reports per category", ["category", "reports"],
                   [[k, n] for k, n in sorted(rep["by_category"].items(), key=lambda kv: -kv[1])]),
        text_table("Participation by channel", ["channel", "reports", "share"],
                   [[ch, n, rep["channel_share"][ch]] for ch, n in rep["by_channel"].items()]),
        text_table("Handled across boundaries, per agency",
                   ["agency", "dispatches", "cross_boundary", "share"],
                   [[r["agency_id"], r["dispatches"], r["cross_boundary"], r["share"]]
                    for r in cb["by_agency"]]),
        text_table("Handled across boundaries, per municipality",
                   ["municipality", "dispatches", "cross_boundary", "share"],
                   [[r["municipality"], r["dispatches"], r["cross_boundary"], r["share"]]
                    for r in cb["by_municipality"]]),
        text_table("Response times per agency (seconds)",
                   ["agency", "incidents", "acked", "ack_p50", "ack_p90", "resolved", "res_p50", "res_p90"],
                   [[r["agency_id"], r["incidents"], r["acknowledged"], r["ack_p50_s"], r["ack_p90_s"],
                     r["resolved"], r["resolve_p50_s"], r["resolve_p90_s"]] for r in ind["response_times"]]),
        text_table("Open incidents per agency", ["agency", "dispatched", "open"],
                   [[r["agency_id"], r["dispatched"], r["open"]] for r in ind["open_incidents"]]),
        text_table("Alerts per municipality (Actual)", ["municipality", "severity", "alerts"],
                   [[r["municipality"], r["severity"], r["alerts"]] for r in ind["alerts"]["rows"]]),
        delivery.render_text(ind["delivery"]),
        rerouting.render_text(ind["rerouting"]),
        cases.render_text(ind["cases"]),
    ]
    return "\n\n".join(parts) + "\n"


def totals(store: Store, with_ids: bool = False) -> dict[str, Any]:
    """What the store holds, deduplicated (FINAL) and raw: the operator's "did anything
    get lost or doubled" check, also used by the end-to-end tests."""
    db = store.database
    (inc,) = store.query(f"SELECT count() AS rows, uniqExact(id) AS ids FROM {db}.incidents FINAL")
    (raw,) = store.query(f"SELECT count() AS rows FROM {db}.incidents")
    per_agency = store.query(
        f"SELECT agency_id, service, count() AS dispatches FROM {db}.dispatches FINAL "
        "GROUP BY agency_id, service ORDER BY agency_id, service")
    (status,) = store.query(f"SELECT count() AS rows FROM {db}.status_events FINAL")
    (alerts,) = store.query(f"SELECT count() AS rows FROM {db}.alerts FINAL")
    (receipts,) = store.query(f"SELECT count() AS rows FROM {db}.delivery_receipts FINAL")
    # Grouping (migration 0008): the storm's "every report in one case, N cases" check.
    (grouped,) = store.query(f"SELECT countIf(case_id IS NOT NULL) AS reports, uniqExact(case_id) AS cases, "
                             f"sum(length(update_agencies)) AS updates FROM {db}.incidents FINAL")
    (splits,) = store.query(f"SELECT uniqExact(incident_id) AS n FROM {db}.case_splits FINAL")
    out: dict[str, Any] = {
        "incidents": int(inc["rows"]), "incident_ids": int(inc["ids"]), "incident_rows_raw": int(raw["rows"]),
        "dispatches": sum(int(r["dispatches"]) for r in per_agency),
        "dispatches_by_agency": [{"agency_id": r["agency_id"], "service": r["service"],
                                  "dispatches": int(r["dispatches"])} for r in per_agency],
        "status_events": int(status["rows"]), "alerts": int(alerts["rows"]),
        "delivery_receipts": int(receipts["rows"]),
        "grouped_reports": int(grouped["reports"]), "case_ids": int(grouped["cases"]),
        "case_updates": int(grouped["updates"]), "split_reports": int(splits["n"]),
    }
    if with_ids:
        out["ids"] = [str(r["id"]) for r in store.query(f"SELECT DISTINCT id FROM {db}.incidents")]
    return out


__all__ = ["CLOSED_STATUSES", "LOCAL_TZ", "Cell", "Query", "alerts_sql", "cell_selection", "compute",
           "cross_boundary", "cross_boundary_select", "cross_boundary_sql", "dispatch_states", "insee_codes",
           "open_incidents_sql", "parse_cell", "render_text", "reports_by_month_sql", "reports_sql",
           "response_times", "response_times_select", "response_times_sql", "share", "text_table", "totals"]
