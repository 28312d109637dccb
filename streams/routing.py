"""Who must act on an incident or an alert: pure functions of (event, territory), no I/O.

Incidents
    The categories map to services through ``routing.yaml`` (``incident_rules``, plus
    ``escalations`` from a severity up). For each service, the responsible agency is the
    one whose service area covers the place of the event.

    *Where it happened.* With coordinates, the point decides: a point outside every
    municipality is unroutable (``outside_territory``); a point inside a municipality other
    than the declared one is routed by the point (the reporter stood in the next town),
    ``RoutingDecision.relocated`` is set and the declared municipality stays on the incident
    for statistics. (The anti-spoofing check compares the declared municipality with the
    intake topic, never with the point.) Without coordinates (phone, desk), the declared
    municipality is the place.

    *Without coordinates*, only a service area covering the *whole* municipality
    (municipality lists, ``all``, or a polygon covering it) can be trusted: a partial
    polygon (the syndicate's valley) would be a guess, and the town hall's own service is
    the one that knows its streets and can forward. If no area covers the whole
    municipality, the partial area covering the largest share of it is used, so that
    someone is always in charge.

BOUNDARY RULE (deterministic, FixMyStreet's first complaint is boundary roads sent to the
wrong body). A point exactly on a shared boundary is covered by several municipality
polygons: it belongs to the declared municipality if its polygon covers the point, else to
the lowest INSEE code among those covering it. Where several service areas of one service
cover the point, the highest ``priority`` wins, then the smallest area, then the lowest
agency id. A point on the edge of a service area polygon is inside it.

CROSS-BOUNDARY (the "share handled across boundaries" indicator: how much the pooling
of services between municipalities actually carries). A target is ``cross_boundary`` when
  * the agency has a home municipality and the event is not there (the shared police of
    Le Plessis-Gautier acting in Trémel-en-Lande, a town hall helping its neighbour), or
  * the agency has no home municipality and is an *intercommunal* pooled body (stormwater
    syndicate, intercommunal mediation, monitoring cell): it exists because towns pooled it.
Departmental and state services (SDIS, ARS) are never cross-boundary: acting everywhere
is their ordinary competence, counting them would drown the indicator. For an alert, "the
event is not there" means the home municipality is not among the affected ones.

Alerts (CAP)
    The alert area is the union, per ``info``, of its polygons, circles and INSEE geocodes
    (``valueName`` "INSEE"; other geocode schemes are ignored). A circle is approximated
    by a 64-gon in a local equirectangular projection centred on it (km per degree of
    longitude scaled by cos(latitude)): well under 1 % error for the radii of local alerts.
    ``alert_rules`` select services by CAP category or by event code (``valueName``
    "veille", value an incident category). Every agency whose *effective* service area
    (its area minus the parts where a higher-ranked area of the same service takes over)
    shares ground with the alert area receives it, plus the ``municipal_safeguard`` agency
    of every affected municipality (the PCS chain). An area touching the territory only
    along its border does not affect it; an area outside is unroutable.

Targets are deduplicated on (agency, service), the first rule that asked wins, and come
in rule order (then agency id). A service nobody provides at the place yields a warning;
the decision is unroutable (``no_agency``) only if no target is left.
"""

from __future__ import annotations

import math
import random
import time
import weakref
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import shapely
from shapely.geometry.base import BaseGeometry

from veille.schemas.models import (
    Alert,
    AlertArea,
    AlertInfo,
    Channel,
    DispatchTarget,
    GeoPoint,
    Incident,
    IncidentCategory,
    ServiceKind,
    Severity,
)
from veille.territory import AREA_TOLERANCE, Agency, AgencyLevel, ServiceArea, Territory, load_territory

# Codes of unroutable decisions (RoutingDecision.unroutable).
UNKNOWN_MUNICIPALITY = "unknown_municipality"
OUTSIDE_TERRITORY = "outside_territory"
NO_RULE = "no_rule"
NO_AGENCY = "no_agency"

INSEE_GEOCODE = "INSEE"
VEILLE_EVENT_CODE = "veille"
KM_PER_DEGREE_LAT = 110.574
KM_PER_DEGREE_LON_EQUATOR = 111.320
CIRCLE_SEGMENTS = 64
_CACHE_LIMIT = 200_000


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """Targets to dispatch to, or why there are none.

    ``unroutable`` is the reason code (``outside_territory``, ``unknown_municipality``,
    ``no_rule``, ``no_agency``; None when routable) and ``reason`` the precise message
    ("point 47.2,-3.1 is outside the territory", "no municipal_police agency serves 35403").
    """

    targets: tuple[DispatchTarget, ...] = ()
    municipalities: tuple[str, ...] = ()  # where it happened / the alert's affected towns
    unroutable: str | None = None
    reason: str = ""
    warnings: tuple[str, ...] = ()
    relocated: bool = False  # incident point lies in another municipality than declared

    @property
    def routable(self) -> bool:
        return self.unroutable is None

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.rule for t in self.targets))

    @property
    def agencies(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.agency_id for t in self.targets))


def _unroutable(code: str, reason: str, municipalities: tuple[str, ...] = ()) -> RoutingDecision:
    return RoutingDecision(unroutable=code, reason=reason, municipalities=municipalities)


def cross_boundary(agency: Agency, municipalities: Collection[str]) -> bool:
    """See the module docstring: a municipal body acting elsewhere, or a pooled body."""
    if agency.home_municipality is not None:
        return agency.home_municipality not in municipalities
    return agency.level == AgencyLevel.intercommunal


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True, eq=False, slots=True)
class _Candidate:
    area: ServiceArea
    agency: Agency
    whole: bool  # covers the whole municipality: no point test needed
    share: float  # covered fraction of the municipality


def _rank(area: ServiceArea) -> tuple[int, float, str, int]:
    return (-area.priority, area.area, area.agency_id, area.index)


class _Plan:
    """Everything about a territory that does not depend on the event, computed once."""

    def __init__(self, t: Territory) -> None:
        self.t = t
        self.needs: dict[tuple[IncidentCategory, Severity], tuple[tuple[str, ServiceKind], ...]] = {}
        for category in IncidentCategory:
            for severity in Severity:
                asked = [(r.id, s) for r in t.rules.incident_rules if category in r.categories
                         for s in r.services]
                asked += [(r.id, s) for r in t.rules.escalations if r.applies(category, severity)
                          for s in r.services]
                first: dict[ServiceKind, str] = {}
                for rule_id, service in asked:
                    first.setdefault(service, rule_id)
                self.needs[(category, severity)] = tuple((r, s) for s, r in first.items())

        self.ranked: dict[ServiceKind, tuple[ServiceArea, ...]] = {}
        self.candidates: dict[tuple[str, ServiceKind], tuple[_Candidate, ...]] = {}
        for service in ServiceKind:
            areas = tuple(sorted(t.areas_for(service), key=_rank))
            self.ranked[service] = areas
            for area in areas:
                shapely.prepare(area.geometry)
            for code, m in t.municipalities.items():
                mine = []
                for area in areas:
                    whole = area.whole_territory or (area.municipalities is not None
                                                     and code in area.municipalities)
                    m_area = m.geometry.area
                    share = 1.0 if whole else shapely.intersection(m.geometry, area.geometry).area / m_area
                    if share <= AREA_TOLERANCE:
                        continue
                    whole = whole or share >= 1.0 - AREA_TOLERANCE
                    mine.append(_Candidate(area, t.agencies[area.agency_id], whole, share))
                self.candidates[(code, service)] = tuple(mine)
        self._effective: dict[ServiceKind, tuple[tuple[ServiceArea, BaseGeometry], ...]] = {}
        self.targets: dict[tuple[str, ServiceKind, str, bool], DispatchTarget] = {}
        self.cache: dict[tuple[object, ...], RoutingDecision] = {}

    def target(self, agency: Agency, service: ServiceKind, rule: str,
               where: Collection[str]) -> DispatchTarget:
        key = (agency.id, service, rule, cross_boundary(agency, where))
        found = self.targets.get(key)
        if found is None:
            # Interned: routing the same kind of event again allocates nothing.
            found = self.targets[key] = DispatchTarget(agency_id=key[0], service=service, rule=rule,
                                                       cross_boundary=key[3])
        return found

    def effective(self, service: ServiceKind) -> tuple[tuple[ServiceArea, BaseGeometry], ...]:
        """Each area minus the ground a higher-ranked area of the same service takes over."""
        found = self._effective.get(service)
        if found is None:
            out = []
            taken = shapely.Polygon()
            for area in self.ranked[service]:
                geom = shapely.difference(area.geometry, taken)
                if geom.area > AREA_TOLERANCE * max(area.area, 1e-12):
                    shapely.prepare(geom)
                    out.append((area, geom))
                taken = shapely.union(taken, area.geometry)
            found = self._effective[service] = tuple(out)
        return found


_PLANS: weakref.WeakKeyDictionary[Territory, _Plan] = weakref.WeakKeyDictionary()


def _plan(t: Territory) -> _Plan:
    plan = _PLANS.get(t)
    if plan is None:
        plan = _PLANS[t] = _Plan(t)
    return plan


def _pick(cands: tuple[_Candidate, ...], x: float | None, y: float | None) -> _Candidate | None:
    if x is None or y is None:
        for c in cands:
            if c.whole:
                return c
        return max(cands, key=lambda c: c.share, default=None)
    for c in cands:
        if c.whole or shapely.intersects_xy(c.area.geometry, x, y):
            return c
    return None


# --------------------------------------------------------------------------- incidents


def route_incident(incident: Incident, territory: Territory) -> RoutingDecision:
    plan = _plan(territory)
    declared = incident.municipality
    if declared not in territory.municipalities:
        return _unroutable(UNKNOWN_MUNICIPALITY, f"municipality {declared} is not in the territory")
    needs = plan.needs[(incident.category, incident.severity)]
    if not needs:
        return _unroutable(NO_RULE, f"no routing rule for category {incident.category.value}", (declared,))
    loc = incident.location
    x = y = None
    where = declared
    if loc is not None:
        x, y = loc.lon, loc.lat
        hits = territory.index.locate(x, y)
        if not hits:
            return _unroutable(OUTSIDE_TERRITORY, f"point {y},{x} is outside the territory")
        if len(hits) == 1:
            where = hits[0]
        elif declared not in hits:
            where = hits[0]  # hits are sorted: lowest INSEE code
    chosen = tuple(_pick(plan.candidates[(where, service)], x, y) for _, service in needs)
    key = (where, where != declared, incident.category, incident.severity, chosen)
    decision = plan.cache.get(key)
    if decision is None:
        decision = _incident_decision(plan, where, declared, needs, chosen)
        if len(plan.cache) >= _CACHE_LIMIT:
            plan.cache.clear()
        plan.cache[key] = decision
    return decision


def _incident_decision(plan: _Plan, where: str, declared: str, needs: tuple[tuple[str, ServiceKind], ...],
                       chosen: tuple[_Candidate | None, ...]) -> RoutingDecision:
    targets: list[DispatchTarget] = []
    missing: list[str] = []
    scope = (where,)
    for (rule, service), cand in zip(needs, chosen, strict=True):
        if cand is None:
            missing.append(f"no {service.value} agency serves {where}")
        else:
            targets.append(plan.target(cand.agency, service, rule, scope))
    if not targets:
        return _unroutable(NO_AGENCY, "; ".join(missing), scope)
    return RoutingDecision(targets=tuple(targets), municipalities=scope, warnings=tuple(missing),
                           relocated=where != declared)


# --------------------------------------------------------------------------- alerts


def circle_polygon(lat: float, lon: float, radius_km: float, segments: int = CIRCLE_SEGMENTS) -> BaseGeometry:
    """A circle of ``radius_km`` around (lat, lon) as a WGS84 polygon (see module docstring)."""
    km_lon = max(KM_PER_DEGREE_LON_EQUATOR * math.cos(math.radians(lat)), 1e-6)
    ring = [(lon + radius_km * math.cos(a) / km_lon, lat + radius_km * math.sin(a) / KM_PER_DEGREE_LAT)
            for a in (2 * math.pi * k / segments for k in range(segments))]
    return shapely.Polygon(ring)


def _polygonal(geom: BaseGeometry) -> BaseGeometry:
    if geom.is_valid:
        return geom
    # "structure" keeps what the ring encloses (a broadcast informs rather too many than too
    # few) and costs milliseconds where "linework" took minutes on a few hundred crossings;
    # the models refuse invalid rings beyond MAX_INVALID_POLYGON_VERTICES anyway.
    repaired = shapely.make_valid(geom, method="structure")
    parts = [p for p in shapely.get_parts(repaired) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def alert_area(area: AlertArea | Iterable[AlertArea],
               territory: Territory) -> tuple[BaseGeometry, tuple[str, ...]]:
    """Union of the areas' shapes, and the INSEE geocodes that are not in the territory."""
    areas = [area] if isinstance(area, AlertArea) else list(area)
    shapes: list[BaseGeometry] = []
    unknown: list[str] = []
    for a in areas:
        shapes += [_polygonal(shapely.Polygon([(p.lon, p.lat) for p in ring])) for ring in a.polygons]
        shapes += [circle_polygon(c.center.lat, c.center.lon, c.radius_km) for c in a.circles]
        for code in a.geocodes:
            if code.value_name.upper() != INSEE_GEOCODE:
                continue
            m = territory.municipalities.get(code.value)
            if m is None:
                unknown.append(code.value)
            else:
                shapes.append(m.geometry)
    geom = shapely.union_all(shapes) if shapes else shapely.Polygon()
    return geom, tuple(dict.fromkeys(unknown))


def _meets(prepared: BaseGeometry, geom: BaseGeometry) -> bool:
    # Sharing ground, not just a border line: a shared edge recomputed by GEOS (an area
    # minus a higher-ranked one) leaves float slivers, hence an area test, not touches().
    if not shapely.intersects(prepared, geom):
        return False
    shared = shapely.intersection(prepared, geom).area
    return bool(shared > AREA_TOLERANCE * min(prepared.area, geom.area))


def _alert_services(plan: _Plan, info: AlertInfo) -> list[tuple[str, ServiceKind]]:
    codes = {c.value for c in info.event_codes if c.value_name.lower() == VEILLE_EVENT_CODE}
    first: dict[ServiceKind, str] = {}
    for rule in plan.t.rules.alert_rules:
        if set(rule.cap_categories) & set(info.category) or {c.value for c in rule.event_codes} & codes:
            for service in rule.services:
                first.setdefault(service, rule.id)
    return [(r, s) for s, r in first.items()]


def route_alert(alert: Alert, territory: Territory) -> RoutingDecision:
    plan = _plan(territory)
    targets: dict[tuple[str, ServiceKind], DispatchTarget] = {}
    affected: set[str] = set()
    warnings: list[str] = []
    per_info = []
    for info in alert.infos:
        geom, unknown = alert_area(info.areas, territory)
        warnings += [f"geocode INSEE {c} is not in the territory" for c in unknown]
        if geom.is_empty:
            continue
        shapely.prepare(geom)
        towns = {code for code, m in territory.municipalities.items() if _meets(geom, m.geometry)}
        affected |= towns
        per_info.append((info, geom, towns))
    if not affected:
        descs = "; ".join(a.area_desc for info in alert.infos for a in info.areas)
        return _unroutable(OUTSIDE_TERRITORY, f"alert area ({descs}) does not intersect the territory")

    for info, geom, towns in per_info:
        for rule, service in _alert_services(plan, info):
            found = False
            for area, effective in plan.effective(service):
                if _meets(effective, geom):
                    found = True
                    agency = territory.agencies[area.agency_id]
                    targets.setdefault((agency.id, service), plan.target(agency, service, rule, towns))
            if not found:
                warnings.append(f"no {service.value} agency serves the alert area")
    pcs = territory.rules.pcs
    if pcs is not None:
        for code in sorted(affected):
            cand = _pick(plan.candidates[(code, pcs.service)], None, None)
            if cand is None:
                warnings.append(f"no {pcs.service.value} agency serves {code}")
                continue
            targets.setdefault((cand.agency.id, pcs.service),
                               plan.target(cand.agency, pcs.service, pcs.id, (code,)))
    municipalities = tuple(sorted(affected))
    if not targets:
        return _unroutable(NO_AGENCY, "; ".join(warnings) or "no rule matches the alert", municipalities)
    return RoutingDecision(targets=tuple(targets.values()), municipalities=municipalities,
                           warnings=tuple(dict.fromkeys(warnings)))


# --------------------------------------------------------------------------- benchmark


def benchmark_routing(n: int = 200_000, territory: Territory | None = None, seed: int = 0) -> float:
    """Incident routing decisions per second on points spread over the territory."""
    t = territory or load_territory()
    rng = random.Random(seed)
    minx, miny, maxx, maxy = t.geometry.bounds
    codes = sorted(t.municipalities)
    now = datetime.now(UTC) - timedelta(minutes=1)
    pool = []
    for i in range(min(n, 5000)):
        lon, lat = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        where = t.locate(lon, lat)
        pool.append(Incident(
            id=UUID(int=i + 1), municipality=where[0] if where else rng.choice(codes),
            category=rng.choice(list(IncidentCategory)), severity=rng.choice(list(Severity)),
            location=GeoPoint(lat=lat, lon=lon), occurred_at=now, reported_at=now,
            channel=Channel.app))
    route_incident(pool[0], t)  # build the plan outside the measurement
    start = time.perf_counter()
    for i in range(n):
        route_incident(pool[i % len(pool)], t)
    return n / (time.perf_counter() - start)


__all__ = [
    "NO_AGENCY", "NO_RULE", "OUTSIDE_TERRITORY", "UNKNOWN_MUNICIPALITY", "RoutingDecision", "alert_area",
    "benchmark_routing", "circle_polygon", "cross_boundary", "route_alert", "route_incident",
]
