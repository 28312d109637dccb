"""The console's page of one incident's chain: ``/console/chain?incident=<uuid>``.

Who received the incident, in order: the router's dispatches, the bodies' answers (with a
refusal's reason code, never its text), the re-routings to the next body and the escalations
of missed deadlines (``redispatches``, migration 0005, made by ``veille router escalations``).
Read FINAL from the store; no personal data (the incident row has none).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from html import escape
from typing import Any

from veille.reads.console.pages import HEAD
from veille.sinks.store import Store
from veille.territory import Territory
from veille.web.i18n import page_texts


def chain_sql(db: str) -> dict[str, str]:
    """The queries of one incident's chain (parameter ``{incident:String}``)."""
    return {
        "incident": f"""
SELECT toString(id) AS id, municipality, category, severity, reported_at, routed_at
FROM {db}.incidents FINAL WHERE toString(id) = {{incident:String}} LIMIT 1""",
        "dispatches": f"""
SELECT agency_id, service, rule, routed_at FROM {db}.dispatches FINAL
WHERE event_type = 'incident' AND event_id = {{incident:String}}
  AND rule NOT LIKE '%+rerouted' AND rule NOT LIKE 'overdue:%'""",
        "redispatches": f"""
SELECT kind, agency_id, service, rule, hop, previous_agency_id, reason, step, refused_at, routed_at
FROM {db}.redispatches FINAL WHERE toString(incident_id) = {{incident:String}}""",
        "statuses": f"""
SELECT agency_id, status, reason, at FROM {db}.status_events FINAL
WHERE toString(incident_id) = {{incident:String}}""",
    }


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value) / 1000, UTC)


def build_chain(store: Store, incident: uuid.UUID) -> dict[str, Any] | None:
    """The incident and its steps in time order (None: the store does not hold it)."""
    q = chain_sql(store.database)
    params = {"incident": str(incident)}
    found = store.query(q["incident"], params)
    if not found:
        return None
    inc = found[0]
    steps: list[dict[str, Any]] = [
        {"at": _utc(r["routed_at"]), "kind": "dispatched", "agency_id": r["agency_id"],
         "service": r["service"], "detail": r["rule"], "hop": 0}
        for r in store.query(q["dispatches"], params)]
    for r in store.query(q["redispatches"], params):
        detail = (f"{r['rule']} ({r['step']}, refus de {r['previous_agency_id']} : {r['reason']})"
                  if r["kind"] == "rerouted" else f"{r['rule']} ({r['previous_agency_id']})")
        steps.append({"at": _utc(r["routed_at"]), "kind": r["kind"], "agency_id": r["agency_id"],
                      "service": r["service"], "detail": detail, "hop": int(r["hop"])})
    for r in store.query(q["statuses"], params):
        detail = r["status"] + (f" : {r['reason']}" if r.get("reason") else "")
        steps.append({"at": _utc(r["at"]), "kind": "status", "agency_id": r["agency_id"], "service": "",
                      "detail": detail, "hop": None})
    order = {"dispatched": 0, "status": 1, "rerouted": 2, "escalated": 2}
    steps.sort(key=lambda s: (s["at"], order[s["kind"]]))
    return {"id": inc["id"], "municipality": inc["municipality"], "category": inc["category"],
            "reported_at": _utc(inc["reported_at"]), "steps": steps}


def chain_html(data: dict[str, Any], territory: Territory) -> str:
    t = page_texts("chain")
    e = {k: escape(v) for k, v in t.items()}

    def body(agency_id: str) -> str:
        agency = territory.agencies.get(agency_id)
        return escape(agency.name if agency else agency_id)

    town = territory.municipalities.get(data["municipality"])
    rows = "".join(
        f'<tr class="step-{s["kind"]}"><td>{s["at"].strftime("%Y-%m-%d %H:%M:%S")}</td>'
        f'<td>{e["kind_" + s["kind"]]}</td><td>{body(s["agency_id"])}</td><td>{escape(s["service"])}</td>'
        f'<td>{escape(s["detail"])}</td><td>{"" if s["hop"] is None else s["hop"]}</td></tr>'
        for s in data["steps"])
    links = '<link rel="stylesheet" href="/static/console/report.css">'
    return HEAD.format(title=e["title"], links=links) + f"""
<body><main id="main">
<nav><a href="/console/">{e['back']}</a></nav>
<h1>{e['title']}</h1>
<p>{e['intro']}</p>
<dl id="chain-incident">
  <dt>{e['incident']}</dt><dd>{escape(data['id'])}</dd>
  <dt>{e['municipality']}</dt><dd>{escape(town.name if town else data['municipality'])}</dd>
  <dt>{e['category']}</dt><dd>{escape(data['category'])}</dd>
  <dt>{e['reported']}</dt><dd>{data['reported_at'].strftime("%Y-%m-%d %H:%M:%S")} UTC</dd>
</dl>
<table id="chain-steps"><caption>{e['steps']}</caption>
<thead><tr><th scope="col">{e['col_at']}</th><th scope="col">{e['col_what']}</th>
<th scope="col">{e['col_body']}</th><th scope="col">{e['col_service']}</th>
<th scope="col">{e['col_detail']}</th><th scope="col">{e['col_hop']}</th></tr></thead>
<tbody>{rows}</tbody></table>
</main></body></html>"""


__all__ = ["build_chain", "chain_html", "chain_sql"]
