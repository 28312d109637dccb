"""Re-routing indicators of a cell (docs/indicators.md, "Re-routing and escalation").

Read from ``redispatches`` (migration 0005: one row per re-routing or escalation the stream
processor made, ``streams/escalation.py``), ``dispatches``, ``incidents`` and the refusals'
reason codes in ``status_events``; every event table is read FINAL (replay-proof). The
incidents of a cell are chosen as everywhere (``cell_selection``: declared municipality in
the cell, reported on a local day of the period).

* ``by_agency``: per body, the incidents dispatched to it and those it refused that were
  re-routed to another body (``rerouted``), and their share;
* ``by_category``: per category, the incidents and those re-routed at least once, and their share;
* ``refusals``: per body and reason code, the refusals (``rejected`` status updates; no code:
  ``unspecified``);
* ``time_lost``: per category, over the re-routed incidents, seconds from the router's first
  dispatch to the last re-routing (the dispatch to the body that kept it): p50, p90, total;
* ``escalations``: per supervisor and missed deadline (``ack`` / ``resolve``), the escalations.
"""

from __future__ import annotations

from typing import Any

from veille.reads.cell import Cell, Query, cell_selection, quantile_seconds, share, text_table
from veille.sinks.store import Store


def by_agency_sql(db: str, cell: Cell) -> Query:
    return (f"""
SELECT d.agency_id AS agency_id, toUInt64(uniqExact(d.event_id)) AS dispatched,
       toUInt64(uniqExactIf(d.event_id, r.incident_id != '')) AS rerouted
FROM
(
    SELECT event_id, agency_id FROM {db}.dispatches FINAL
    WHERE event_type = 'incident' AND {cell_selection()}
) AS d
LEFT JOIN
(
    SELECT DISTINCT toString(incident_id) AS incident_id, previous_agency_id
    FROM {db}.redispatches FINAL WHERE kind = 'rerouted'
) AS r ON r.incident_id = d.event_id AND r.previous_agency_id = d.agency_id
GROUP BY agency_id
ORDER BY agency_id""", cell.params())


def by_category_sql(db: str, cell: Cell) -> Query:
    return (f"""
SELECT i.category AS category, toUInt64(count()) AS incidents, toUInt64(countIf(r.n > 0)) AS rerouted
FROM
(
    SELECT toString(id) AS id, category FROM {db}.incidents FINAL WHERE {cell_selection()}
) AS i
LEFT JOIN
(
    SELECT toString(incident_id) AS incident_id, count() AS n
    FROM {db}.redispatches FINAL WHERE kind = 'rerouted' GROUP BY incident_id
) AS r ON r.incident_id = i.id
GROUP BY category
ORDER BY category""", cell.params())


def refusals_sql(db: str, cell: Cell) -> Query:
    return (f"""
SELECT s.agency_id AS agency_id, ifNull(s.reason, 'unspecified') AS reason, toUInt64(count()) AS refusals
FROM {db}.status_events AS s FINAL
INNER JOIN
(
    SELECT toString(id) AS id FROM {db}.incidents FINAL WHERE {cell_selection()}
) AS i ON toString(s.incident_id) = i.id
WHERE s.status = 'rejected'
GROUP BY agency_id, reason
ORDER BY agency_id, reason""", cell.params())


def time_lost_sql(db: str, cell: Cell) -> Query:
    ms = "toUnixTimestamp64Milli"
    return (f"""
SELECT i.category AS category, toUInt64(count()) AS incidents,
       quantilesExact(0.5, 0.9)(greatest(0, ({ms}(r.last_rerouted) - {ms}(i.routed_at)) / 1000)) AS lost_q,
       sum(greatest(0, ({ms}(r.last_rerouted) - {ms}(i.routed_at)) / 1000)) AS lost_total
FROM
(
    SELECT toString(id) AS id, category, routed_at FROM {db}.incidents FINAL WHERE {cell_selection()}
) AS i
INNER JOIN
(
    SELECT toString(incident_id) AS incident_id, max(routed_at) AS last_rerouted
    FROM {db}.redispatches FINAL WHERE kind = 'rerouted' GROUP BY incident_id
) AS r ON r.incident_id = i.id
GROUP BY category
ORDER BY category""", cell.params())


def escalations_sql(db: str, cell: Cell) -> Query:
    return (f"""
SELECT agency_id, reason AS deadline, toUInt64(count()) AS escalations
FROM {db}.redispatches FINAL
WHERE kind = 'escalated' AND {cell_selection()}
GROUP BY agency_id, deadline
ORDER BY agency_id, deadline""", cell.params())


def compute(store: Store, cell: Cell) -> dict[str, Any]:
    db = store.database
    agencies = [{"agency_id": r["agency_id"], "dispatched": int(r["dispatched"]),
                 "rerouted": int(r["rerouted"]), "share": share(int(r["rerouted"]), int(r["dispatched"]))}
                for r in store.query(*by_agency_sql(db, cell))]
    categories = [{"category": r["category"], "incidents": int(r["incidents"]),
                   "rerouted": int(r["rerouted"]), "share": share(int(r["rerouted"]), int(r["incidents"]))}
                  for r in store.query(*by_category_sql(db, cell))]
    refusals = [{"agency_id": r["agency_id"], "reason": r["reason"], "refusals": int(r["refusals"])}
                for r in store.query(*refusals_sql(db, cell))]
    lost = [{"category": r["category"], "incidents": int(r["incidents"]),
             "lost_p50_s": quantile_seconds(r["lost_q"], 0, int(r["incidents"])),
             "lost_p90_s": quantile_seconds(r["lost_q"], 1, int(r["incidents"])),
             "lost_total_s": round(float(r["lost_total"]), 3)}
            for r in store.query(*time_lost_sql(db, cell))]
    escalations = [{"agency_id": r["agency_id"], "deadline": r["deadline"],
                    "escalations": int(r["escalations"])} for r in store.query(*escalations_sql(db, cell))]
    return {"by_agency": agencies, "by_category": categories, "refusals": refusals, "time_lost": lost,
            "escalations": escalations}


def render_text(ind: dict[str, Any]) -> str:
    return "\n\n".join([
        text_table("Re-routed after a refusal, per body", ["agency", "dispatched", "rerouted", "share"],
                   [[r["agency_id"], r["dispatched"], r["rerouted"], r["share"]] for r in ind["by_agency"]
                    if r["rerouted"]]),
        text_table("Re-routed, per category", ["category", "incidents", "rerouted", "share"],
                   [[r["category"], r["incidents"], r["rerouted"], r["share"]] for r in ind["by_category"]]),
        text_table("Refusals by reason", ["agency", "reason", "refusals"],
                   [[r["agency_id"], r["reason"], r["refusals"]] for r in ind["refusals"]]),
        text_table("Time lost to re-routing (seconds)", ["category", "incidents", "p50", "p90", "total"],
                   [[r["category"], r["incidents"], r["lost_p50_s"], r["lost_p90_s"], r["lost_total_s"]]
                    for r in ind["time_lost"]]),
        text_table("Escalations of overdue dispatches", ["supervisor", "deadline", "escalations"],
                   [[r["agency_id"], r["deadline"], r["escalations"]] for r in ind["escalations"]]),
    ])


__all__ = ["by_agency_sql", "by_category_sql", "compute", "escalations_sql", "refusals_sql", "render_text",
           "time_lost_sql"]
