"""The PCS cascade's indicators from the store (migration 0006 ``pcs_cascade``): per town and
period, activations, representatives notified and acknowledged, persons checked and their
latest status. Counts only; the annual report suppresses the small ones (``console.report``).

* **activations**: distinct activations started in the period;
* **representatives notified / acknowledged**: distinct (activation, owner) pairs with a
  notification / an acknowledgement;
* **persons checked**: distinct (activation, person digest) with a check; *ok*, *needing help*
  and *absent* count each one's latest status. The annual report's **check rate** is the
  share of checked persons seen well (*vu*); the share of registered persons checked needs
  the register's counts, which the store does not hold (see docs/pcs.md).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from veille.pcs.prevention import (
    ParticipantKind,
    PreventionAction,
    WalkReport,
    actions_per_quarter,
    participation,
    walk_reports,
)
from veille.reads.indicators import Cell
from veille.sinks.store import Store
from veille.territory import Territory


def pcs_sql(db: str, cell: Cell) -> tuple[str, dict[str, Any]]:
    return (f"""
WITH events AS (
  SELECT * FROM {db}.pcs_cascade FINAL
  WHERE has({{munis:Array(String)}}, municipality)
    AND toDate(at) >= {{start:Date}} AND toDate(at) < {{end:Date}}
),
latest AS (
  SELECT activation, event_key, argMax(status, at) AS status
  FROM events WHERE kind = 'check' GROUP BY activation, event_key
)
SELECT
  (SELECT uniqExact(activation) FROM events WHERE kind = 'activation') AS activations,
  (SELECT uniqExact(activation, owner) FROM events WHERE kind = 'notified') AS notified,
  (SELECT uniqExact(activation, owner) FROM events WHERE kind = 'acknowledged') AS acknowledged,
  (SELECT count() FROM events WHERE kind = 'notified' AND target = 'cellule') AS to_cell,
  (SELECT count() FROM latest) AS checked,
  (SELECT countIf(status = 'vu') FROM latest) AS ok,
  (SELECT countIf(status = 'besoin_aide') FROM latest) AS need_help,
  (SELECT countIf(status = 'absent') FROM latest) AS absent""", cell.params())


def pcs_indicators(store: Store, municipality: str, start: date, end: date) -> dict[str, int]:
    cell = Cell(municipalities=[municipality], start=start, end=end)
    [row] = store.query(*pcs_sql(store.database, cell))
    return {k: int(v) for k, v in row.items()}


def prevention_actions(store: Store, municipalities: list[str], start: date,
                       end: date) -> list[PreventionAction]:
    rows = store.query(f"""
SELECT id, municipality, kind, day, area, residents, representatives, police, landlords, associations
FROM {store.database}.prevention_actions FINAL
WHERE has({{munis:Array(String)}}, municipality) AND day >= {{start:Date}} AND day < {{end:Date}}
ORDER BY day, id""", Cell(municipalities=municipalities, start=start, end=end).params())
    return [PreventionAction(id=r["id"], municipality=r["municipality"], kind=r["kind"], date=r["day"],
                             area=r["area"], participants={k: int(r[k.value]) for k in ParticipantKind})
            for r in rows]


def walk_reports_sql(db: str, cell: Cell) -> tuple[str, dict[str, Any]]:
    """The reports born from the walks of the cell (the ids a ``prevention`` event lists, migration
    0007) joined with the incidents (when reported) and their status events (first resolution).
    A report counts once the sink stored its incident; not resolved: ``resolved_at`` is NULL."""
    return (f"""
WITH walks AS (
  SELECT id AS action_id, arrayJoin(report_ids) AS report_id
  FROM {db}.prevention_actions FINAL
  WHERE kind = 'exploratory_walk' AND has({{munis:Array(String)}}, municipality)
    AND day >= {{start:Date}} AND day < {{end:Date}}
)
SELECT w.action_id AS action_id, i.reported_at AS reported_at, r.resolved_at AS resolved_at
FROM walks AS w
INNER JOIN (
  SELECT toString(id) AS report_id, min(reported_at) AS reported_at FROM {db}.incidents
  WHERE toString(id) IN (SELECT report_id FROM walks) GROUP BY id
) AS i ON i.report_id = w.report_id
LEFT JOIN (
  SELECT toString(incident_id) AS report_id, min(at) AS resolved_at FROM {db}.status_events
  WHERE status = 'resolved' AND toString(incident_id) IN (SELECT report_id FROM walks)
  GROUP BY incident_id
) AS r ON r.report_id = w.report_id
ORDER BY action_id, reported_at
SETTINGS join_use_nulls = 1""", cell.params())


def walk_report_times(store: Store, municipalities: list[str], start: date, end: date) -> list[WalkReport]:
    cell = Cell(municipalities=municipalities, start=start, end=end)
    return [WalkReport(action_id=r["action_id"], reported_at=r["reported_at"], resolved_at=r["resolved_at"])
            for r in store.query(*walk_reports_sql(store.database, cell))]


def prevention_indicators(store: Store, territory: Territory, municipality: str, start: date,
                          end: date) -> dict[str, Any]:
    """Actions per quarter by kind, participation and the reports born from walks with their
    processing times (``veille.pcs.prevention``), from the store."""
    actions = prevention_actions(store, [municipality], start, end)
    population = {code: m.population for code, m in territory.municipalities.items()}
    reports = walk_report_times(store, [municipality], start, end)
    return {"actions": len(actions), "participants": sum(a.total for a in actions),
            "per_quarter": actions_per_quarter(actions), "participation": participation(actions, population),
            "walk_reports": walk_reports(actions, reports)}


__all__ = ["pcs_indicators", "pcs_sql", "prevention_actions", "prevention_indicators", "walk_report_times",
           "walk_reports_sql"]
