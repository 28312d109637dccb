"""Response deadlines: per agency and category, what was not acknowledged or not resolved in time.

Deadlines come from the territory's ``routing.yaml`` (``response_deadlines``, first matching rule
per category and severity). A *dispatch* is an (incident, agency) pair, as for the cross-boundary
share; times run from the report. Counted per agency and category (docs/indicators.md):

* ``not_acknowledged``: no action yet (nothing after ``received``) and the acknowledge deadline
  has passed, now;
* ``acknowledged_late``: the first action came after the deadline;
* ``open_overdue``: not closed (latest status of that agency neither resolved nor rejected) and
  the resolve deadline has passed, now; ``open_over_3x``: the same beyond three times the deadline
  (Signalen's "open longer than 3x its handling time");
* ``resolved_late``: the first resolution came after the deadline.

"Now" is a parameter, so a count is reproducible and testable. Dispatches of a category and
severity without a deadline are in ``dispatched`` but never late.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from veille.reads.indicators import CLOSED_STATUSES, Cell, Query, cell_selection, text_table
from veille.schemas.models import IncidentCategory, Severity
from veille.sinks.store import Store
from veille.territory import RoutingRules

COUNTS = ("dispatched", "with_deadline", "not_acknowledged", "acknowledged_late", "open_overdue",
          "open_over_3x", "resolved_late")


def deadline_params(rules: RoutingRules) -> dict[str, Any]:
    """The rules flattened to (category|severity → seconds) arrays the SQL looks up with transform()."""
    keys: list[str] = []
    ack: list[float] = []
    res: list[float] = []
    for category in IncidentCategory:
        for severity in Severity:
            rule = rules.deadline_for(category, severity)
            if rule is not None:
                keys.append(f"{category.value}|{severity.value}")
                ack.append(rule.acknowledge_hours * 3600)
                res.append(rule.resolve_hours * 3600)
    return {"dl_keys": keys, "dl_ack": ack, "dl_res": res}


def overdue_sql(db: str, selection: str, params: dict[str, Any], rules: RoutingRules,
                now: datetime) -> Query:
    """``selection``: a condition on ``dispatches`` columns (bound parameters only) choosing the
    incident dispatches of a cell or a console filter."""
    key = "concat(d.cat, '|', d.sev)"
    ms = "toUnixTimestamp64Milli"
    sql = f"""
SELECT agency_id, category,
       toUInt64(count()) AS dispatched,
       toUInt64(countIf(dl_ack > 0)) AS with_deadline,
       toUInt64(countIf(dl_ack > 0 AND ack_ms IS NULL AND now_ms - rep_ms > dl_ack * 1000))
           AS not_acknowledged,
       toUInt64(countIf(dl_ack > 0 AND ack_ms - rep_ms > dl_ack * 1000)) AS acknowledged_late,
       toUInt64(countIf(dl_res > 0 AND NOT closed AND now_ms - rep_ms > dl_res * 1000)) AS open_overdue,
       toUInt64(countIf(dl_res > 0 AND NOT closed AND now_ms - rep_ms > 3 * dl_res * 1000)) AS open_over_3x,
       toUInt64(countIf(dl_res > 0 AND res_ms - rep_ms > dl_res * 1000)) AS resolved_late
FROM
(
    SELECT d.agency_id AS agency_id, d.cat AS category, {ms}(d.first_reported) AS rep_ms,
           {ms}({{now:DateTime64(3, 'UTC')}}) AS now_ms,
           transform({key}, {{dl_keys:Array(String)}}, {{dl_ack:Array(Float64)}}, toFloat64(0)) AS dl_ack,
           transform({key}, {{dl_keys:Array(String)}}, {{dl_res:Array(Float64)}}, toFloat64(0)) AS dl_res,
           {ms}(l.acknowledged_at) AS ack_ms, {ms}(l.resolved_at) AS res_ms,
           l.status IN {CLOSED_STATUSES!r} AS closed
    FROM
    (
        -- New names: an alias equal to a column would replace it in WHERE.
        SELECT event_id, agency_id, any(category) AS cat, any(severity) AS sev,
               min(reported_at) AS first_reported
        FROM {db}.dispatches FINAL
        WHERE event_type = 'incident' AND ({selection})
        GROUP BY event_id, agency_id
    ) AS d
    LEFT JOIN
    (
        SELECT toString(incident_id) AS event_id, agency_id, minMerge(acknowledged_at) AS acknowledged_at,
               minMerge(resolved_at) AS resolved_at, argMaxMerge(latest_status) AS status
        FROM {db}.incident_lifecycle
        GROUP BY incident_id, agency_id
    ) AS l ON l.event_id = d.event_id AND l.agency_id = d.agency_id
)
GROUP BY agency_id, category
ORDER BY agency_id, category"""
    return sql, {**params, **deadline_params(rules), "now": now}


def overdue_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"agency_id": r["agency_id"], "category": r["category"], **{k: int(r[k]) for k in COUNTS}}
            for r in rows]


def render_text(deadlines: dict[str, Any]) -> str:
    rows = [r for r in deadlines["rows"] if r["with_deadline"]]
    return text_table(f"Response deadlines per agency and category (now = {deadlines['now']})",
                      ["agency", "category", "dispatched", "not_acked_late", "acked_late", "open_late",
                       "open_>3x", "resolved_late"],
                      [[r["agency_id"], r["category"], r["dispatched"], r["not_acknowledged"],
                        r["acknowledged_late"], r["open_overdue"], r["open_over_3x"], r["resolved_late"]]
                       for r in rows])


def compute(store: Store, cell: Cell, rules: RoutingRules, now: datetime | None = None) -> dict[str, Any]:
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    sql, params = overdue_sql(store.database, cell_selection(), cell.params(), rules, now)
    return {"now": now.isoformat(timespec="seconds"), "rows": overdue_rows(store.query(sql, params))}
