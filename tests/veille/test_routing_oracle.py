"""An independent oracle for routing: the README's rules, written a second time, by brute force.

``reference_incident`` / ``reference_alert`` below are deliberately simple: every
municipality and every service area is tested one by one with shapely predicates, nothing
is indexed, prepared, cached or ranked in advance. They are the executable form of the
README's "Routing" rules; if they disagree with ``route_incident`` / ``route_alert`` on a
random territory, one of the two (or the README) is wrong.

Territories are generated on a grid of 1/64 degree cells (exact binary fractions, so a
point on a shared edge or vertex is *exactly* on it): municipalities are unions of cells,
with a hole filled by an enclave, exclaves (multipolygons), cells left outside the
territory; service areas are municipality lists, ``all`` and polygons (partly outside
the territory), with priorities; agencies of every level, with and without home.
Events: points on vertices, on edge midpoints, in cells and outside the territory, no
coordinates, unknown municipalities; alerts with polygons, geodesic circles, INSEE and
other geocodes, and several infos.

Circles are drawn with ``circle_polygon`` in both implementations: its shape is checked on
its own in ``tests/veille/test_routing.py`` (geodesic, within 0.1 % of the radius).
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import shapely
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from shapely.geometry import mapping

from veille.schemas.models import (
    Alert,
    AlertArea,
    AlertInfo,
    CapCategory,
    CapCertainty,
    CapMsgType,
    CapScope,
    CapSeverity,
    CapStatus,
    CapUrgency,
    Channel,
    Circle,
    GeoPoint,
    Incident,
    IncidentCategory,
    KeyValue,
    ServiceKind,
    Severity,
)
from veille.territory import Agency, AgencyLevel, ServiceArea, Territory, read_territory
from veille.territory.alert_area import circle_polygon
from veille.territory.routing import route_alert, route_incident

# --------------------------------------------------------------------------- the README's rules

TOLERANCE = 1e-7  # relative area under which "shared ground" is float noise along an edge
FALLBACK = "+largest_share"
Target = tuple[str, str, str, bool]  # agency, service, rule, cross_boundary


@dataclass
class Outcome:
    unroutable: str | None = None
    targets: set[Target] = field(default_factory=set)
    municipalities: tuple[str, ...] = ()
    relocated: bool = False


def shares_ground(a: shapely.Geometry, b: shapely.Geometry) -> bool:
    """Two shapes share ground when their intersection has an area (a common edge is not enough)."""
    if a.is_empty or b.is_empty:
        return False
    return bool(shapely.intersection(a, b).area > TOLERANCE * min(a.area, b.area))


def is_cross_boundary(agency: Agency, towns: set[str]) -> bool:
    """README: departmental/state never; a home decides; a home-less pooled body always."""
    if agency.level in (AgencyLevel.departmental, AgencyLevel.state):
        return False
    if agency.home_municipality is not None:
        return agency.home_municipality not in towns
    return agency.level == AgencyLevel.intercommunal


def rank(area: ServiceArea) -> tuple[int, float, str, int]:
    """Highest priority, then smallest area, then lowest agency id (then file order)."""
    return (-area.priority, area.geometry.area, area.agency_id, area.index)


def areas_of(t: Territory, service: ServiceKind) -> list[ServiceArea]:
    """Service areas of agencies that exist and provide the service."""
    return [a for a in t.service_areas if a.service == service and a.agency_id in t.agencies
            and service in t.agencies[a.agency_id].services]


def services_for(t: Territory, category: IncidentCategory,
                 severity: Severity) -> list[tuple[str, ServiceKind]]:
    """(rule, service): incident rules naming the category, then escalations reached; first asker wins."""
    asked: list[tuple[str, ServiceKind]] = []
    for rule in t.rules.incident_rules:
        if category in rule.categories:
            asked += [(rule.id, s) for s in rule.services]
    for esc in t.rules.escalations:
        if (esc.categories is None or category in esc.categories) and severity.rank >= esc.min_severity.rank:
            asked += [(esc.id, s) for s in esc.services]
    first: dict[ServiceKind, str] = {}
    for rule_id, service in asked:
        first.setdefault(service, rule_id)
    return [(r, s) for s, r in first.items()]


def without_coordinates(t: Territory, service: ServiceKind, code: str) -> tuple[ServiceArea | None, bool]:
    """The area covering the whole municipality, else the largest share of it (guessed=True)."""
    town = t.municipalities[code].geometry
    serving = [a for a in areas_of(t, service) if shares_ground(a.geometry, town)]
    whole = [a for a in serving
             if shapely.intersection(a.geometry, town).area >= (1 - TOLERANCE) * town.area]
    if whole:
        return min(whole, key=rank), False
    if serving:
        return min(serving, key=lambda a: (-shapely.intersection(a.geometry, town).area, rank(a))), True
    return None, False


def reference_incident(incident: Incident, t: Territory) -> Outcome:
    declared = incident.municipality
    if declared not in t.municipalities:
        return Outcome("unknown_municipality")
    services = services_for(t, incident.category, incident.severity)
    if not services:
        return Outcome("no_rule")
    point = None
    where = declared
    if incident.location is not None:
        point = shapely.Point(incident.location.lon, incident.location.lat)
        covering = sorted(code for code, m in t.municipalities.items() if m.geometry.covers(point))
        if not covering:
            return Outcome("outside_territory")
        where = declared if declared in covering else covering[0]
    town = t.municipalities[where].geometry
    targets: set[Target] = set()
    for rule, service in services:
        if point is not None:
            serving = [a for a in areas_of(t, service) if shares_ground(a.geometry, town)]
            covering_areas = [a for a in serving if a.geometry.covers(point)]
            chosen = min(covering_areas, key=rank) if covering_areas else None
            guessed = False
        else:
            chosen, guessed = without_coordinates(t, service, where)
        if chosen is not None:
            agency = t.agencies[chosen.agency_id]
            targets.add((agency.id, service.value, rule + (FALLBACK if guessed else ""),
                         is_cross_boundary(agency, {where})))
    if not targets:
        return Outcome("no_agency")
    return Outcome(None, targets, (where,), where != declared)


def info_area(info: AlertInfo, t: Territory) -> shapely.Geometry:
    shapes = []
    for area in info.areas:
        shapes += [shapely.Polygon([(p.lon, p.lat) for p in ring]) for ring in area.polygons]
        shapes += [circle_polygon(c.center.lat, c.center.lon, c.radius_km) for c in area.circles]
        shapes += [t.municipalities[g.value].geometry for g in area.geocodes
                   if g.value_name.upper() == "INSEE" and g.value in t.municipalities]
    return shapely.union_all(shapes) if shapes else shapely.Polygon()


def rule_matches(rule: Any, info: AlertInfo) -> bool:
    codes = {c.value for c in info.event_codes if c.value_name.lower() == "veille"}
    return bool(set(rule.cap_categories) & set(info.category)
                or {c.value for c in rule.event_codes} & codes)


def reference_alert(alert: Alert, t: Territory) -> Outcome:
    infos = []
    for info in alert.infos:
        area = info_area(info, t)
        towns = {code for code, m in t.municipalities.items() if shares_ground(area, m.geometry)}
        infos.append((info, area, towns))
    affected = set().union(*(towns for _, _, towns in infos))
    if not affected:
        return Outcome("outside_territory")

    rule_ids = [r.id for r in t.rules.alert_rules]
    asked_by: dict[tuple[str, ServiceKind], set[str]] = {}
    reached_towns: dict[str, set[str]] = {}  # agency -> towns of the infos that reached it
    for info, area, towns in infos:
        for rule in t.rules.alert_rules:
            if not rule_matches(rule, info):
                continue
            for service in rule.services:
                for a in areas_of(t, service):  # a broadcast: every area, no priority
                    if shares_ground(a.geometry, area):
                        asked_by.setdefault((a.agency_id, service), set()).add(rule.id)
                        reached_towns.setdefault(a.agency_id, set()).update(towns)
    chosen = {key: min(rules, key=rule_ids.index) for key, rules in asked_by.items()}

    pcs = t.rules.pcs
    if pcs is not None:
        whole_somewhere: dict[str, bool] = {}
        for code in sorted(affected):
            contact, guessed = without_coordinates(t, pcs.service, code)
            if contact is None:
                continue
            for _, _, towns in infos:
                if code in towns:
                    reached_towns.setdefault(contact.agency_id, set()).update(towns)
            if (contact.agency_id, pcs.service) not in chosen:
                before = whole_somewhere.get(contact.agency_id, False)
                whole_somewhere[contact.agency_id] = before or not guessed
        for agency_id, whole in whole_somewhere.items():
            chosen[(agency_id, pcs.service)] = pcs.id + ("" if whole else FALLBACK)
    if not chosen:
        return Outcome("no_agency", municipalities=tuple(sorted(affected)))
    targets = {(ag, svc.value, rule, is_cross_boundary(t.agencies[ag], reached_towns[ag]))
               for (ag, svc), rule in chosen.items()}
    return Outcome(None, targets, tuple(sorted(affected)))


def observed(decision: Any) -> Outcome:
    return Outcome(decision.unroutable,
                   {(x.agency_id, x.service.value, x.rule, x.cross_boundary) for x in decision.targets},
                   decision.municipalities if decision.routable or decision.unroutable == "no_agency" else (),
                   getattr(decision, "relocated", False))


# --------------------------------------------------------------------------- random territories

X0, Y0, CELL = -2.0, 48.0, 1 / 64  # ~1.2 x 1.7 km cells; binary fractions: exact edges
SIZE = 6  # grid of SIZE x SIZE cells
SERVICES = [ServiceKind.municipal_police, ServiceKind.stormwater, ServiceKind.fire_rescue,
            ServiceKind.municipal_safeguard]
CATEGORIES = [IncidentCategory.burglary, IncidentCategory.flood, IncidentCategory.wildfire,
              IncidentCategory.drought]
UNRULED = IncidentCategory.graffiti  # never in a generated rule: no_rule
UNKNOWN_CODE = "35999"


def code_of(k: int) -> str:
    return f"35{101 + k}"


def cell_box(i: int, j: int) -> shapely.Geometry:
    return shapely.box(X0 + i * CELL, Y0 + j * CELL, X0 + (i + 1) * CELL, Y0 + (j + 1) * CELL)


def grid_polygon(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    """A rectangle in grid units (may reach outside the territory), as GeoJSON."""
    return mapping(shapely.box(X0 + x0 * CELL, Y0 + y0 * CELL, X0 + x1 * CELL, Y0 + y1 * CELL))


@st.composite
def grids(draw: st.DrawFn) -> dict[tuple[int, int], int]:
    """Cell -> municipality number: Voronoi blobs, an enclave in a hole, exclaves, empty cells."""
    n = draw(st.integers(2, 4))
    cells = [(i, j) for i in range(SIZE) for j in range(SIZE)]
    seeds = draw(st.lists(st.sampled_from(cells), min_size=n, max_size=n, unique=True))
    grid = {c: min(range(n), key=lambda k: (abs(c[0] - seeds[k][0]) + abs(c[1] - seeds[k][1]), k))
            for c in cells}
    if draw(st.booleans()):  # a municipality with a hole, filled by an enclave
        ci, cj = draw(st.integers(1, SIZE - 2)), draw(st.integers(1, SIZE - 2))
        owner = draw(st.integers(0, n - 1))
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                grid[(ci + di, cj + dj)] = owner
        grid[(ci, cj)] = n
    # Exclaves (a cell given to another municipality) and cells outside the territory (-1).
    for cell in draw(st.lists(st.sampled_from(cells), max_size=3)):
        grid[cell] = draw(st.integers(-1, n - 1))
    return grid


@st.composite
def territories(draw: st.DrawFn) -> dict[str, Any]:
    """The three files of a random territory, as data."""
    grid = draw(grids())
    numbers = sorted({k for k in grid.values() if k >= 0})
    codes = [code_of(k) for k in numbers]
    features = [{"type": "Feature", "properties": {"insee": code_of(k), "name": f"Commune {k}"},
                 "geometry": mapping(shapely.union_all([cell_box(*c) for c, v in grid.items() if v == k]))}
                for k in numbers]

    agencies, areas = [], []
    for a in range(draw(st.integers(2, 6))):
        level = draw(st.sampled_from(list(AgencyLevel)))
        home = None
        if level in (AgencyLevel.municipal, AgencyLevel.intercommunal):
            home = draw(st.sampled_from([None, *codes]))
        services = draw(st.lists(st.sampled_from(SERVICES), min_size=1, max_size=3, unique=True))
        agency_id = f"ag-{a}"
        agencies.append({"id": agency_id, "name": agency_id, "level": level.value,
                         "services": [s.value for s in services], "home_municipality": home})
        for service in services:
            for _ in range(draw(st.integers(1, 2))):
                area: dict[str, Any] = {"agency": agency_id, "service": service.value,
                                        "priority": draw(st.sampled_from([0, 0, 1, 5]))}
                kind = draw(st.sampled_from(["municipalities", "all", "polygon"]))
                if kind == "municipalities":
                    area["municipalities"] = draw(st.lists(st.sampled_from(codes), min_size=1, unique=True))
                elif kind == "all":
                    area["all"] = True
                else:
                    x0, y0 = draw(st.integers(-1, SIZE - 1)), draw(st.integers(-1, SIZE - 1))
                    area["polygon"] = grid_polygon(x0, y0, x0 + draw(st.integers(1, 4)),
                                                   y0 + draw(st.integers(1, 4)))
                areas.append(area)

    def rules(prefix: str, count: int, make: Callable[[], dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"id": f"{prefix}-{i}", **make()} for i in range(count)]

    def some(values: list[Any], min_size: int = 1) -> list[str]:
        return [v.value for v in draw(st.lists(st.sampled_from(values), min_size=min_size, max_size=3,
                                               unique=True))]

    incident_rules = rules("inc", draw(st.integers(1, 3)),
                           lambda: {"categories": some(CATEGORIES), "services": some(SERVICES)})
    escalations = rules("esc", draw(st.integers(0, 2)), lambda: {
        "categories": draw(st.one_of(st.none(), st.just(some(CATEGORIES)))),
        "min_severity": draw(st.sampled_from(list(Severity))).value, "services": some(SERVICES)})
    alert_rules = rules("alert", draw(st.integers(1, 3)), lambda: {
        "cap_categories": some([CapCategory.Met, CapCategory.Safety, CapCategory.Fire], 0),
        "event_codes": some(CATEGORIES, 0) or ["flood"], "services": some(SERVICES)})
    routing: dict[str, Any] = {"incident_rules": incident_rules, "escalations": escalations,
                               "alert_rules": alert_rules}
    if draw(st.booleans()):
        routing["pcs"] = None
    return {"municipalities.geojson": {"type": "FeatureCollection", "features": features},
            "jurisdiction.yaml": {"intercommunality": "Random", "agencies": agencies, "service_areas": areas},
            "routing.yaml": routing, "codes": codes}


def load(files: dict[str, Any], directory: Path) -> Territory:
    (directory / "municipalities.geojson").write_text(json.dumps(files["municipalities.geojson"]))
    for name in ("jurisdiction.yaml", "routing.yaml"):
        (directory / name).write_text(yaml.safe_dump(files[name]))
    return read_territory(directory)


# --------------------------------------------------------------------------- random events

NOW = datetime.now(UTC) - timedelta(minutes=5)
# Grid coordinates of points: vertices, edge midpoints and cell centres, inside and outside.
COORDS = st.sampled_from([k / 2 for k in range(-2, 2 * SIZE + 3)])


@st.composite
def incidents(draw: st.DrawFn, codes: list[str]) -> Incident:
    located = draw(st.integers(0, 3)) > 0
    point = GeoPoint(lon=X0 + draw(COORDS) * CELL, lat=Y0 + draw(COORDS) * CELL) if located else None
    return Incident(
        id=uuid.uuid4(), municipality=draw(st.sampled_from([*codes, *codes, UNKNOWN_CODE])),
        category=draw(st.sampled_from([*CATEGORIES, UNRULED])),
        severity=draw(st.sampled_from(list(Severity))),
        location=point, address=None if located else "place de la Mairie", occurred_at=NOW, reported_at=NOW,
        channel=Channel.app if located else Channel.phone)


@st.composite
def alert_areas(draw: st.DrawFn, codes: list[str]) -> AlertArea:
    polygons, circles, geocodes = [], [], []
    for _ in range(draw(st.integers(0, 2))):
        x0, y0 = draw(COORDS), draw(COORDS)
        x1, y1 = x0 + draw(st.sampled_from([0.5, 1, 2, 4])), y0 + draw(st.sampled_from([0.5, 1, 3]))
        corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        polygons.append([GeoPoint(lon=X0 + x * CELL, lat=Y0 + y * CELL) for x, y in corners])
    if draw(st.booleans()):
        centre = GeoPoint(lon=X0 + draw(COORDS) * CELL, lat=Y0 + draw(COORDS) * CELL)
        circles.append(Circle(center=centre, radius_km=draw(st.sampled_from([0.05, 0.4, 1.0, 3.0]))))
    for _ in range(draw(st.integers(0, 2))):
        scheme = draw(st.sampled_from(["INSEE", "INSEE", "insee", "EMMA_ID"]))
        geocodes.append(KeyValue(value_name=scheme, value=draw(st.sampled_from([*codes, UNKNOWN_CODE]))))
    if not (polygons or circles or geocodes):
        geocodes.append(KeyValue(value_name="INSEE", value=draw(st.sampled_from(codes))))
    return AlertArea(area_desc="zone", polygons=polygons, circles=circles, geocodes=geocodes)


@st.composite
def alerts(draw: st.DrawFn, codes: list[str]) -> Alert:
    infos = []
    for _ in range(draw(st.integers(1, 3))):
        category = draw(st.lists(st.sampled_from([CapCategory.Met, CapCategory.Safety, CapCategory.Fire,
                                                  CapCategory.Health]), min_size=1, max_size=2, unique=True))
        event_codes = [KeyValue(value_name="veille", value=c.value)
                       for c in draw(st.lists(st.sampled_from(CATEGORIES), max_size=1))]
        infos.append(AlertInfo(category=category, event="test", event_codes=event_codes,
                               urgency=CapUrgency.Immediate, severity=CapSeverity.Severe,
                               certainty=CapCertainty.Likely,
                               areas=draw(st.lists(alert_areas(codes), min_size=1, max_size=2))))
    return Alert(identifier=f"oracle-{uuid.uuid4()}", sender="oracle@test.example", sent=NOW,
                 status=CapStatus.Actual, msg_type=CapMsgType.Alert, scope=CapScope.Public, infos=infos)


# --------------------------------------------------------------------------- the comparisons

# Bounded and deterministic: the same examples on every run (CI), well under a minute.
ORACLE = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@ORACLE
@given(data=st.data(), files=territories())
def test_route_incident_agrees_with_the_readme_rules(data: st.DataObject, files: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t = load(files, Path(tmp))
    for incident in data.draw(st.lists(incidents(files["codes"]), min_size=16, max_size=16)):
        expected = reference_incident(incident, t)
        got = observed(route_incident(incident, t))
        if expected.unroutable is not None:
            assert got.unroutable == expected.unroutable, incident
            continue
        assert got == expected, incident


@ORACLE
@given(data=st.data(), files=territories())
def test_route_alert_agrees_with_the_readme_rules(data: st.DataObject, files: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t = load(files, Path(tmp))
    for alert in data.draw(st.lists(alerts(files["codes"]), min_size=4, max_size=4)):
        expected = reference_alert(alert, t)
        got = observed(route_alert(alert, t))
        if expected.unroutable is not None:
            assert got.unroutable == expected.unroutable, alert
            continue
        assert got == expected, alert
        # The flag and the rules are functions of the whole alert: reversed infos, same answer.
        reversed_infos = alert.model_copy(update={"infos": alert.infos[::-1]})
        assert observed(route_alert(reversed_infos, t)) == got


def test_the_generator_makes_the_shapes_it_promises() -> None:
    """The hole-and-enclave and exclave cases really occur (premise of the oracle tests)."""
    from hypothesis import find

    def shapes(files: dict[str, Any]) -> set[str]:
        out = set()
        for f in files["municipalities.geojson"]["features"]:
            geom = shapely.geometry.shape(f["geometry"])
            parts = list(getattr(geom, "geoms", [geom]))
            if len(parts) > 1:
                out.add("multipolygon")
            if any(p.interiors for p in parts):
                out.add("hole")
        return out

    for wanted in ("hole", "multipolygon"):
        find(territories(), lambda f, w=wanted: w in shapes(f),  # type: ignore[misc]
             settings=settings(derandomize=True, database=None, max_examples=500,
                               phases=[Phase.generate],  # the first one found will do: no shrinking
                               suppress_health_check=list(HealthCheck)))
