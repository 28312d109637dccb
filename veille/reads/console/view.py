"""What one console view shows, as JSON: the queries of ``queries.py`` run on a store."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shapely.geometry import mapping

from veille.reads import deadlines, delivery
from veille.reads.console import case, queries
from veille.reads.console.filters import ConsoleFilter
from veille.reads.indicators import cross_boundary, response_times, share
from veille.sinks.store import Store
from veille.territory import Territory


def _series(rows: list[dict[str, Any]], days: list[str]) -> dict[str, list[int]]:
    """{key: [count per day]} with zeros on days without reports (the charts need every day)."""
    index = {d: i for i, d in enumerate(days)}
    out: dict[str, list[int]] = defaultdict(lambda: [0] * len(days))
    for r in rows:
        day = r["day"].isoformat() if isinstance(r["day"], date) else str(r["day"])
        if day in index:
            out[str(r["key"])][index[day]] += int(r["reports"])
    return dict(sorted(out.items(), key=lambda kv: -sum(kv[1])))


def _agency_name(territory: Territory, agency_id: str) -> str:
    agency = territory.agencies.get(agency_id)
    return agency.name if agency else agency_id


def territory_geojson(territory: Territory) -> dict[str, Any]:
    features = [{"type": "Feature", "properties": {"insee": m.insee, "name": m.name,
                                                   "population": m.population},
                 "geometry": mapping(m.geometry)}
                for m in sorted(territory.municipalities.values(), key=lambda m: m.insee)]
    return {"type": "FeatureCollection", "name": territory.name, "features": features}


def alert_shapes(cap_json: str | None) -> dict[str, list[Any]] | None:
    """The polygons and circles of a stored alert (its CAP areas), for the map; None when the
    row predates migration 0003 or its areas are geocodes only."""
    if not cap_json:
        return None
    polygons: list[Any] = []
    circles: list[Any] = []
    for info in json.loads(cap_json).get("infos", []):
        for area in info.get("areas", []):
            polygons += [[[p["lat"], p["lon"]] for p in ring] for ring in area.get("polygons", [])]
            circles += [{"lat": c["center"]["lat"], "lon": c["center"]["lon"],
                         "radius_m": c["radius_km"] * 1000} for c in area.get("circles", [])]
    return {"polygons": polygons, "circles": circles} if polygons or circles else None


def delivery_bodies(territory: Territory, rows: list[dict[str, Any]],
                    stuck: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per body: its rows per method, its deliveries not accepted yet (the undelivered first), and
    totals over its methods (a delivery is a (dispatch, method) pair). Bodies with undelivered
    dispatches first (the oldest first), then those failing (the oldest first), then by name."""
    bodies: dict[str, dict[str, Any]] = {}

    def body(agency_id: str) -> dict[str, Any]:
        if agency_id not in bodies:
            bodies[agency_id] = {"agency_id": agency_id, "name": _agency_name(territory, agency_id),
                                 "methods": [], "stuck": []}
        return bodies[agency_id]

    for r in rows:
        body(r["agency_id"])["methods"].append(r)
    for r in stuck:
        body(r["agency_id"])["stuck"].append(r)
    for b in bodies.values():
        methods = b["methods"]
        b["delivered"] = sum(r["delivered"] for r in methods)
        b["pending"] = sum(r["pending"] for r in methods)
        b["failing"] = sum(r[s] for r in methods for s in delivery.FAILING)
        b["undelivered"] = sum(r["undelivered"] for r in methods)
        for since in ("failing_since", "undelivered_since"):
            b[since] = min((r[since] for r in methods if r[since]), default=None)
    return sorted(bodies.values(), key=lambda b: (
        b["undelivered_since"] is None, b["undelivered_since"] or "",
        b["failing_since"] is None, b["failing_since"] or "", b["name"]))


def build_view(store: Store, territory: Territory, f: ConsoleFilter,
               now: datetime | None = None) -> dict[str, Any]:
    db = store.database
    # Whole seconds: the page shows it and /deadlines?now= reproduces the same counts.
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    munis = sorted(territory.municipalities)
    selected = f.municipalities or munis
    per_muni = {r["municipality"]: r for r in store.query(*queries.by_municipality_sql(db, f, munis))}
    total = sum(int(r["reports"]) for r in per_muni.values())
    days = []
    day = f.start
    while day < f.end:
        days.append(day.isoformat())
        day += timedelta(days=1)

    cross = cross_boundary(store.query(*queries.cross_boundary_sql(db, f, munis)))
    cross_muni = {r["municipality"]: (r["dispatches"], r["cross_boundary"]) for r in cross["by_municipality"]}

    municipalities = []
    for code in munis:
        m = territory.municipalities[code]
        row = per_muni.get(code)
        reports = int(row["reports"]) if row else 0
        d, c = cross_muni.get(code, (0, 0))
        municipalities.append({
            "insee": code, "name": m.name, "population": m.population, "selected": code in selected,
            "reports": reports, "open": int(row["open"]) if row else 0,
            "per_1000": round(reports * 1000 / m.population, 2) if m.population else None,
            "dispatches": d, "cross_boundary": c, "cross_share": share(c, d)})

    late = deadlines.overdue_rows(store.query(*queries.overdue_sql(db, f, munis, territory.rules, now)))
    times = [{"agency_id": t["agency_id"], "name": _agency_name(territory, t["agency_id"]), **t}
             for t in map(response_times, store.query(*queries.response_times_sql(db, f, munis)))]
    (weeks,) = store.query(*queries.handled_weeks_sql(db, f, munis, now))
    sent = delivery_bodies(
        territory, [delivery.agency_method_row(r) for r in store.query(*queries.delivery_sql(db, f, munis))],
        [delivery.stuck_row(r) for r in store.query(*queries.delivery_stuck_sql(db, f, munis))])
    handled = {k: int(v) for k, v in weeks.items()}
    alerts = [{"sender": a["sender"], "identifier": a["identifier"], "sent": a["sent_at"].isoformat(),
               "event": a["alert_event"], "severity": a["alert_severity"], "headline": a["alert_headline"],
               "municipalities": list(a["affected"]), "state": a["alert_state"],
               # Only alerts in force are drawn: a cancelled or superseded area would mislead.
               "shapes": alert_shapes(a["cap"]) if a["alert_state"] == "active" else None}
              for a in store.query(*queries.alerts_sql(db, f, munis))]
    return {
        "filter": f.query(),
        "period": {"from": f.start.isoformat(), "to": f.end.isoformat()},
        "total": total,
        "municipalities": municipalities,
        "days": days,
        "by_category": _series(store.query(*queries.daily_sql(db, f, munis, "category")), days),
        "by_channel": _series(store.query(*queries.daily_sql(db, f, munis, "channel")), days),
        "grid": {"degrees": queries.GRID_DEGREES, "sensitive": list(queries.SENSITIVE_CATEGORIES),
                 "cells": [{"lat": float(r["lat"]), "lon": float(r["lon"]), "reports": int(r["reports"])}
                           for r in store.query(*queries.grid_sql(db, f, munis))]},
        "cross_boundary": {
            "dispatches": cross["dispatches"], "cross_boundary": cross["cross_boundary"],
            "share": cross["share"],
            "by_agency": [{"agency_id": a["agency_id"], "name": _agency_name(territory, a["agency_id"]), **a}
                          for a in cross["by_agency"]],
        },
        # The map's cases instead of its cells (``show=cases``, docs/grouping.md).
        "cases": (case.map_case_rows(store.query(*case.map_cases_sql(db, f, munis)), territory)
                  if f.show else []),
        "alerts": alerts,
        "response_times": times,
        "handled": handled,
        "deadlines": {"now": now.isoformat(timespec="seconds"), "rows": [
            {**r, "name": territory.agencies[r["agency_id"]].name if r["agency_id"] in territory.agencies
             else r["agency_id"]} for r in late if r["with_deadline"]]},
        "delivery": {"bodies": sent},
    }
