"""SQL of the console, pure builders: ``(sql, params)`` from a filter, tested without a store.

Every builder selects from the same filtered set of incidents (``filtered_incidents``), so the
map, the charts, the tables and ``export.csv`` of one view always count the same incidents.
Event tables are read FINAL and counted by distinct id, as the indicators are (replay-proof).
The indicators the console shares with the CLI, the API and the annual report (cross-boundary
share, response times, deadlines, closed statuses, delivery) are their one definition in
``veille.reads.indicators``, ``veille.reads.deadlines`` and ``veille.reads.delivery``, given the
console's filters here.

Privacy of positions (README, "Personal data"): the console never returns a stored point.
Positions are rounded to a grid of ``GRID_DEGREES`` (about 1.1 km north-south and 0.75 km
east-west here), and incidents of ``SENSITIVE_CATEGORIES`` (they designate a home or a person)
have no position at all: they are counted per municipality only.
"""

from __future__ import annotations

from datetime import datetime

from veille.reads import deadlines, delivery
from veille.reads.console.filters import ConsoleFilter
from veille.reads.indicators import (
    CLOSED_STATUSES,
    LOCAL_TZ,
    Query,
    cell_selection,
    cross_boundary_select,
    dispatch_states,
    response_times_select,
)
from veille.territory import RoutingRules

GRID_DEGREES = 0.01
SENSITIVE_CATEGORIES = ("assault", "burglary", "drug_trafficking", "neighbour_dispute", "neighbour_noise")


def _latest_status(db: str) -> str:
    # The latest status of an incident over all agencies: the incident_state view's rule.
    return f"""
    SELECT incident_id, argMax(status, last_at) AS status
    FROM (SELECT incident_id, agency_id, argMaxMerge(latest_status) AS status, max(last_at) AS last_at
          FROM {db}.incident_lifecycle GROUP BY incident_id, agency_id)
    GROUP BY incident_id"""


def filtered_incidents(db: str) -> str:
    """The incidents a filter selects, one row per id, with their latest status as ``state``."""
    return f"""
SELECT * FROM (
  SELECT i.id AS id, i.municipality AS municipality, i.category AS category, i.severity AS severity,
         i.channel AS channel, i.lat AS lat, i.lon AS lon, i.reported_at AS reported_at,
         i.agencies AS agencies, i.cross_boundary AS cross_boundary, i.case_id AS case_id,
         if(s.status = '', 'new', s.status) AS state
  FROM (
    SELECT * FROM {db}.incidents FINAL
    WHERE {cell_selection()}
      AND ({{category:String}} = '' OR category = {{category:String}})
      AND ({{channel:String}} = '' OR channel = {{channel:String}})
      AND ({{agency:String}} = '' OR has(agencies, {{agency:String}}))
  ) AS i
  LEFT JOIN ({_latest_status(db)}) AS s ON s.incident_id = i.id
)
WHERE {{status:String}} = '' OR state = {{status:String}}
   OR ({{status:String}} = 'open' AND state NOT IN {CLOSED_STATUSES!r})
   OR ({{status:String}} = 'closed' AND state IN {CLOSED_STATUSES!r})"""


def _q(sql: str, f: ConsoleFilter, munis: list[str]) -> Query:
    return sql, f.params(munis)


def by_municipality_sql(db: str, f: ConsoleFilter, munis: list[str]) -> Query:
    return _q(f"""
SELECT municipality, toUInt64(count()) AS reports,
       toUInt64(countIf(state NOT IN {CLOSED_STATUSES!r})) AS open
FROM ({filtered_incidents(db)})
GROUP BY municipality ORDER BY municipality""", f, munis)


def daily_sql(db: str, f: ConsoleFilter, munis: list[str], dimension: str) -> Query:
    """Reports per local day and category, or per day and channel."""
    if dimension not in ("category", "channel"):
        raise ValueError(f"no daily series by {dimension!r}")
    return _q(f"""
SELECT toDate(reported_at, '{LOCAL_TZ}') AS day, {dimension} AS key, toUInt64(count()) AS reports
FROM ({filtered_incidents(db)})
GROUP BY day, key ORDER BY day, key""", f, munis)


def grid_sql(db: str, f: ConsoleFilter, munis: list[str]) -> Query:
    """Counts per grid cell (its centre), never for sensitive categories, never a stored point."""
    g = GRID_DEGREES
    return _q(f"""
SELECT round((floor(lat / {g}) + 0.5) * {g}, 5) AS lat, round((floor(lon / {g}) + 0.5) * {g}, 5) AS lon,
       toUInt64(count()) AS reports
FROM ({filtered_incidents(db)})
WHERE lat IS NOT NULL AND lon IS NOT NULL AND category NOT IN {SENSITIVE_CATEGORIES!r}
GROUP BY lat, lon ORDER BY lat, lon""", f, munis)


def cross_boundary_sql(db: str, f: ConsoleFilter, munis: list[str]) -> Query:
    """The cross-boundary indicator (``indicators.cross_boundary_select``) over the filtered
    incidents; with an agency filter only that agency's dispatches are counted."""
    selection = ("({agency:String} = '' OR agency_id = {agency:String}) "
                 f"AND event_id IN (SELECT toString(id) FROM ({filtered_incidents(db)}))")
    return _q(cross_boundary_select(dispatch_states(db, selection)), f, munis)


def alerts_sql(db: str, f: ConsoleFilter, munis: list[str]) -> Query:
    """Actual CAP alerts sent in the period that affect a selected municipality, with their
    state from the lifecycle views of ``migrations/0003`` (as ``veille.reads.alert_state.state``)."""
    pair = "(sender, identifier)"
    return _q(f"""
SELECT sender, identifier, any(sent) AS sent_at, any(event) AS alert_event, any(severity) AS alert_severity,
       any(headline) AS alert_headline, any(municipalities) AS affected, any(cap_json) AS cap,
       multiIf({pair} IN (SELECT sender, identifier FROM {db}.alert_closures WHERE by_msg_type = 'Cancel'),
               'cancelled',
               {pair} IN (SELECT sender, identifier FROM {db}.alert_closures), 'superseded',
               any(msg_type) NOT IN ('Alert', 'Update'), 'closing',
               {pair} IN (SELECT sender, identifier FROM {db}.active_alerts), 'active',
               'expired') AS alert_state
FROM {db}.alerts FINAL
WHERE status = 'Actual' AND hasAny(municipalities, {{munis:Array(String)}})
  AND toDate(sent, '{LOCAL_TZ}') >= {{start:Date}} AND toDate(sent, '{LOCAL_TZ}') < {{end:Date}}
GROUP BY sender, identifier ORDER BY sent_at DESC LIMIT 200""", f, munis)


def export_sql(db: str, f: ConsoleFilter, munis: list[str]) -> Query:
    """The rows of export.csv: one per incident, positions as grid cells (none if sensitive),
    the case it counts in now (``case_reports.case_of``: itself once split out; empty when never
    grouped)."""
    g = GRID_DEGREES
    cell = (f"if(lat IS NULL OR lon IS NULL OR category IN {SENSITIVE_CATEGORIES!r}, NULL, "
            f"round((floor({{v}} / {g}) + 0.5) * {g}, 5))")
    return _q(f"""
SELECT toString(id) AS id, municipality, category, severity, channel,
       formatDateTime(reported_at, '%Y-%m-%d %H:%i:%S', '{LOCAL_TZ}') AS reported_local,
       state AS status, arrayStringConcat(arraySort(agencies), ' ') AS agencies,
       cross_boundary, {cell.format(v="lat")} AS cell_lat, {cell.format(v="lon")} AS cell_lon,
       if(case_id IS NULL, '', toString(if(id IN (SELECT incident_id FROM {db}.case_splits FINAL), id,
                                            assumeNotNull(case_id)))) AS case_id
FROM ({filtered_incidents(db)})
ORDER BY reported_at, id""", f, munis)


def options_sql(db: str) -> Query:
    """Agencies known to the store, for the agency filter's list."""
    return f"SELECT DISTINCT agency_id FROM {db}.dispatches ORDER BY agency_id", {}


def overdue_sql(db: str, f: ConsoleFilter, munis: list[str], rules: RoutingRules, now: datetime) -> Query:
    """Late dispatches (``veille.reads.deadlines``) of the filtered incidents; with an agency
    filter, that agency's dispatches only."""
    selection = (f"event_id IN (SELECT toString(id) FROM ({filtered_incidents(db)})) "
                 "AND ({agency:String} = '' OR agency_id = {agency:String})")
    return deadlines.overdue_sql(db, selection, f.params(munis), rules, now)


def response_times_sql(db: str, f: ConsoleFilter, munis: list[str]) -> Query:
    """Per agency, over the filtered incidents it answered: time from the report to its first action
    and to its first resolution, median and 90th percentile (the indicator's definition, with
    the console's filters; with an agency filter, that agency only)."""
    incidents = f"SELECT id, reported_at FROM ({filtered_incidents(db)})"
    return _q(response_times_select(db, incidents, "{agency:String} = '' OR agency_id = {agency:String}"),
              f, munis)


def handled_weeks_sql(db: str, f: ConsoleFilter, munis: list[str], now: datetime) -> Query:
    """Signalen's comparison: incidents first resolved in the 7 days before ``now`` and in the 7
    days before those, whatever the period filter (municipalities, category, channel, agency apply)."""
    return (f"""
SELECT toUInt64(countIf(resolved_at >= {{now:DateTime64(3, 'UTC')}} - INTERVAL 7 DAY)) AS last_7_days,
       toUInt64(countIf(resolved_at < {{now:DateTime64(3, 'UTC')}} - INTERVAL 7 DAY)) AS previous_7_days
FROM
(
    SELECT incident_id, min(first_resolved) AS resolved_at
    FROM (SELECT incident_id, agency_id, minMerge(resolved_at) AS first_resolved
          FROM {db}.incident_lifecycle GROUP BY incident_id, agency_id)
    WHERE {{agency:String}} = '' OR agency_id = {{agency:String}}
    GROUP BY incident_id
) AS l
INNER JOIN
(
    SELECT id FROM {db}.incidents FINAL
    WHERE has({{munis:Array(String)}}, municipality)
      AND ({{category:String}} = '' OR category = {{category:String}})
      AND ({{channel:String}} = '' OR channel = {{channel:String}})
) AS i ON l.incident_id = i.id
WHERE resolved_at >= {{now:DateTime64(3, 'UTC')}} - INTERVAL 14 DAY
  AND resolved_at < {{now:DateTime64(3, 'UTC')}}""", {**f.params(munis), "now": now})


# The deliveries of the bodies the filter selects: those of the municipalities and the period,
# or the one agency of the agency filter. A receipt names no event: the other filters do not apply.
_DELIVERY_AGENCY = "{agency:String} = '' OR agency_id = {agency:String}"


def delivery_sql(db: str, f: ConsoleFilter, munis: list[str]) -> Query:
    """Per body and method: the deliveries in each state now and the delivery time
    (``veille.reads.delivery``, the indicator's definition, with the console's filters)."""
    return _q(delivery.by_agency_method_select(db, delivery.selection(db, _DELIVERY_AGENCY)), f, munis)


def delivery_stuck_sql(db: str, f: ConsoleFilter, munis: list[str]) -> Query:
    """The deliveries not accepted yet, per body the undelivered first (``delivery.stuck_select``)."""
    return _q(delivery.stuck_select(db, delivery.selection(db, _DELIVERY_AGENCY)), f, munis)
