"""Cases in the console (issue 25): the map's case markers and the page of one case,
``/console/case?id=<case id>``.

A case is read from migration 0008's views (``cases``, ``case_reports``): its reports (time,
channel, municipality, severity; never a pseudonym, a point or a text), the reports split out of
it (each a case of its own, linked), and per body what it received of the case (dispatches,
updates) and its latest status, acknowledgement and resolution over the case's dispatches. The
case's overall state is the one its residents are told (``veille.notify.changes.overall`` over
the bodies' latest statuses), so the console and the tracking page agree.

On the map a case is a marker at the centre of the grid cell (``queries.GRID_DEGREES``) holding
its reports' mean position, sized by its reports: no stored point, as for reports.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from html import escape
from typing import Any

from veille.grouping.cases import case_severity
from veille.notify.changes import BodyStatus, Track, overall
from veille.reads.console.filters import ConsoleFilter
from veille.reads.console.pages import HEAD
from veille.reads.console.queries import GRID_DEGREES, filtered_incidents
from veille.reads.indicators import Query
from veille.schemas.models import IncidentCategory, Severity
from veille.sinks.store import Store
from veille.territory import Territory
from veille.web.i18n import page_texts

MAP_LIMIT = 500  # the largest cases first; the rest are in the indicators


def map_cases_sql(db: str, f: ConsoleFilter, munis: list[str]) -> Query:
    """The cases of the filtered reports (each whole), for the map: grid cell, size, facts."""
    g = GRID_DEGREES
    return (f"""
SELECT toString(case_id) AS id, category, toUInt64(reports) AS reports, municipalities, severity,
       round((floor(lat / {g}) + 0.5) * {g}, 5) AS lat, round((floor(lon / {g}) + 0.5) * {g}, 5) AS lon,
       first_report_at, first_acknowledged_at
FROM {db}.cases
WHERE lat IS NOT NULL AND case_id IN (
    SELECT case_of FROM {db}.case_reports
    WHERE grouped AND id IN (SELECT id FROM ({filtered_incidents(db)})))
ORDER BY reports DESC, first_report_at, id
LIMIT {MAP_LIMIT}""", f.params(munis))


def shown_severity(territory: Territory, category: str, severity: str, reports: int) -> str:
    """The case's severity as the grouper raised it: its most severe report's (the store's),
    at least severe from its rule's ``severe_at`` reports (the rule of today's territory)."""
    try:
        rule = territory.rules.grouping.rule_for(IncidentCategory(category))
        return case_severity(rule.severe_at if rule else None, Severity(severity), reports).value
    except ValueError:  # a category or severity this release does not know: as stored
        return severity


def map_case_rows(rows: list[dict[str, Any]], territory: Territory) -> list[dict[str, Any]]:
    return [{"id": r["id"], "category": r["category"], "reports": int(r["reports"]),
             "municipalities": list(r["municipalities"]),
             "severity": shown_severity(territory, r["category"], r["severity"], int(r["reports"])),
             "lat": float(r["lat"]), "lon": float(r["lon"]),
             "first_report_at": _utc(r["first_report_at"]).isoformat(timespec="seconds"),
             "acknowledged": r["first_acknowledged_at"] is not None} for r in rows]


def case_sql(db: str) -> dict[str, str]:
    """The queries of one case's page (parameter ``{case:String}``)."""
    ids = f"SELECT id FROM {db}.case_reports WHERE toString(case_of) = {{case:String}}"
    return {
        "case": f"""
SELECT toString(case_id) AS id, category, reports, municipalities, severity, split, first_report_at,
       last_report_at, first_acknowledged_at
FROM {db}.cases WHERE toString(case_id) = {{case:String}} LIMIT 1""",
        "reports": f"""
SELECT toString(id) AS id, reported_at, channel, municipality, severity, category,
       id = case_of AS first, toString(case_of) AS case_of
FROM {db}.case_reports
WHERE toString(case_of) = {{case:String}} OR (split AND toString(case_id) = {{case:String}})
ORDER BY reported_at, id""",
        "received": f"""
SELECT agency_id, toUInt64(sum(d)) AS dispatches, toUInt64(sum(u)) AS updates
FROM
(
    SELECT agency_id, uniqExact(event_id) AS d, 0 AS u FROM {db}.dispatches FINAL
    WHERE event_type = 'incident' AND event_id IN (SELECT toString(id) FROM ({ids})) GROUP BY agency_id
    UNION ALL
    SELECT agency_id, 0 AS d, uniqExact(id) AS u FROM {db}.incidents FINAL
    ARRAY JOIN update_agencies AS agency_id WHERE id IN ({ids}) GROUP BY agency_id
)
GROUP BY agency_id ORDER BY agency_id""",
        "statuses": f"""
SELECT agency_id, argMax(st, at) AS status, max(at) AS latest_at,
       min(ack) AS acknowledged_at, min(res) AS resolved_at
FROM
(
    SELECT incident_id, agency_id, argMaxMerge(latest_status) AS st, max(last_at) AS at,
           minMerge(acknowledged_at) AS ack, minMerge(resolved_at) AS res
    FROM {db}.incident_lifecycle WHERE incident_id IN ({ids})
    GROUP BY incident_id, agency_id
)
GROUP BY agency_id ORDER BY agency_id""",
    }


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value) / 1000, UTC)


def _opt(value: Any) -> datetime | None:
    return None if value is None else _utc(value)


def build_case(store: Store, case_id: uuid.UUID, territory: Territory) -> dict[str, Any] | None:
    """The case, its reports and its bodies (None: the store holds no such case)."""
    q = case_sql(store.database)
    params = {"case": str(case_id)}
    found = store.query(q["case"], params)
    if not found:
        return None
    c = found[0]
    reports = [{"id": r["id"], "at": _utc(r["reported_at"]), "channel": r["channel"],
                "municipality": r["municipality"], "severity": r["severity"], "category": r["category"],
                "first": bool(r["first"]) and r["case_of"] == str(case_id),
                "split_out": r["case_of"] != str(case_id)}
               for r in store.query(q["reports"], params)]
    bodies: dict[str, dict[str, Any]] = {}
    for r in store.query(q["received"], params):
        bodies[r["agency_id"]] = {"agency_id": r["agency_id"], "dispatches": int(r["dispatches"]),
                                  "updates": int(r["updates"]), "status": None, "last_at": None,
                                  "acknowledged_at": None, "resolved_at": None}
    for r in store.query(q["statuses"], params):
        b = bodies.setdefault(r["agency_id"], {"agency_id": r["agency_id"], "dispatches": 0, "updates": 0})
        b.update(status=r["status"], last_at=_utc(r["latest_at"]), acknowledged_at=_opt(r["acknowledged_at"]),
                 resolved_at=_opt(r["resolved_at"]))
    # The state residents are told: the bodies dispatched the case, each by its latest status.
    first_at = _utc(c["first_report_at"])
    track = Track({a: BodyStatus(b["status"] or "received", (b["last_at"] or first_at).isoformat())
                   for a, b in bodies.items() if b["dispatches"] or b["status"]})
    return {"id": c["id"], "category": c["category"], "reports": int(c["reports"]),
            "municipalities": list(c["municipalities"]),
            "severity": shown_severity(territory, c["category"], c["severity"], int(c["reports"])),
            "split": bool(c["split"]),
            "first_report_at": _utc(c["first_report_at"]), "last_report_at": _utc(c["last_report_at"]),
            "first_acknowledged_at": _opt(c["first_acknowledged_at"]),
            "state": overall(track).phase.value if track.bodies else "transmitted",
            "report_rows": reports, "bodies": sorted(bodies.values(), key=lambda b: b["agency_id"])}


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def case_html(data: dict[str, Any], territory: Territory) -> str:
    t = page_texts("case")
    labels = page_texts("console")
    e = {k: escape(v) for k, v in t.items()}

    def town(code: str) -> str:
        m = territory.municipalities.get(code)
        return escape(m.name if m else code)

    def body(agency_id: str) -> str:
        agency = territory.agencies.get(agency_id)
        return escape(agency.name if agency else agency_id)

    def role(r: dict[str, Any]) -> str:
        if r["split_out"]:
            return f'<a href="case?id={escape(r["id"])}">{e["role_split"]}</a>'
        return e["role_first"] if r["first"] else e["role_member"]

    reports = "".join(
        f'<tr><td>{_when(r["at"])}</td><td>{escape(labels.get("ch_" + r["channel"], r["channel"]))}</td>'
        f'<td>{town(r["municipality"])}</td><td>{escape(t.get("sev_" + r["severity"], r["severity"]))}</td>'
        f'<td>{escape(labels.get("cat_" + r["category"], r["category"]))}</td><td>{role(r)}</td></tr>'
        for r in data["report_rows"])
    bodies = "".join(
        f'<tr><td>{body(b["agency_id"])}</td><td>{b["dispatches"]}</td><td>{b["updates"]}</td>'
        f'<td>{escape(labels.get("st_" + (b["status"] or "new"), b["status"] or ""))}</td>'
        f'<td>{_when(b["acknowledged_at"])}</td><td>{_when(b["resolved_at"])}</td></tr>'
        for b in data["bodies"])
    category = escape(labels.get("cat_" + data["category"], data["category"]))
    links = '<link rel="stylesheet" href="/static/console/report.css">'
    return HEAD.format(title=e["title"], links=links) + f"""
<body><main id="main">
<nav><a href="/console/?show=cases">{e['back']}</a></nav>
<h1>{e['title']} : {category}</h1>
<p>{e['intro']}</p>
<dl id="case-facts">
  <dt>{e['state']}</dt><dd id="case-state">{escape(t.get('state_' + data['state'], data['state']))}</dd>
  <dt>{e['reports']}</dt><dd id="case-reports">{data['reports']}</dd>
  <dt>{e['municipalities']}</dt><dd>{', '.join(town(m) for m in data['municipalities'])}</dd>
  <dt>{e['severity']}</dt><dd>{escape(t.get('sev_' + data['severity'], data['severity']))}</dd>
  <dt>{e['first_report']}</dt><dd>{_when(data['first_report_at'])} UTC</dd>
  <dt>{e['first_ack']}</dt><dd>{_when(data['first_acknowledged_at'])}</dd>
</dl>
{f"<p>{e['split_note']}</p>" if data['split'] else ""}
<table id="case-report-rows"><caption>{e['reports_caption']}</caption>
<thead><tr><th scope="col">{e['col_at']}</th><th scope="col">{e['col_channel']}</th>
<th scope="col">{e['col_municipality']}</th><th scope="col">{e['col_severity']}</th>
<th scope="col">{e['col_category']}</th><th scope="col">{e['col_role']}</th></tr></thead>
<tbody>{reports}</tbody></table>
<table id="case-bodies"><caption>{e['bodies_caption']}</caption>
<thead><tr><th scope="col">{e['col_body']}</th><th scope="col">{e['col_dispatches']}</th>
<th scope="col">{e['col_updates']}</th><th scope="col">{e['col_status']}</th>
<th scope="col">{e['col_ack']}</th><th scope="col">{e['col_resolved']}</th></tr></thead>
<tbody>{bodies}</tbody></table>
</main></body></html>"""


__all__ = ["MAP_LIMIT", "build_case", "case_html", "case_sql", "map_case_rows", "map_cases_sql"]
