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
    the one that knows its streets and can forward. Among several such areas the usual
    order applies (highest priority, smallest area, lowest agency id). If no area covers
    the whole municipality, the area covering the largest share of it is used (ties: the
    usual order), so that someone is always in charge, and the target's rule is marked
    ``<rule id>+largest_share`` (:data:`LARGEST_SHARE_SUFFIX`) so the guess shows on the
    dispatch and in the store.

BOUNDARY RULE (deterministic, FixMyStreet's first complaint is boundary roads sent to the
wrong body). A point exactly on a shared boundary is covered by several municipality
polygons: it belongs to the declared municipality if its polygon covers the point, else to
the lowest INSEE code among those covering it. Then, among the service areas *serving that
municipality* (sharing ground with it, not just a border) that cover the point, the highest
``priority`` wins, then the smallest area, then the lowest agency id. A point on the edge of
a service area polygon is inside it; an area of the neighbouring town whose edge runs along
the boundary does not serve this town and is not considered.

CROSS-BOUNDARY (the "share handled across boundaries" indicator: how much work is done by
a body for a municipality that is not its own). A target is ``cross_boundary`` when
  * the agency is departmental or state (SDIS, ARS): **never**. Acting everywhere is their
    ordinary competence, counting them would drown the indicator; the territory loader
    refuses a ``home_municipality`` on them, and the level is checked first anyway;
  * the agency has a home municipality (municipal, or a pooled body based in one town):
    when the event is not there (the shared police of Le Plessis-Gautier acting in
    Trémel-en-Lande, a town hall helping its neighbour). A pooled body acting inside its
    own home town is *not* counted: for that town it is its own service;
  * the agency has no home municipality: when it is an *intercommunal* pooled body
    (stormwater syndicate, intercommunal mediation, monitoring cell), always: it exists
    because towns pooled it, so wherever it acts it acts for a town that is not "its own".
For an alert the flag is a function of the whole alert, not of the order of its ``info``
blocks: for an agency, "the event is not there" means its home municipality is not among
the municipalities affected by the infos that reached it (through an alert rule, or through
the PCS chain of a municipality the info affects). All the targets of one agency for one
alert carry the same flag.

Alerts (CAP)
    The alert area is the union, per ``info``, of its polygons, circles and INSEE geocodes
    (``valueName`` "INSEE"; other geocode schemes are ignored). A circle is built
    geodesically on the WGS84 ellipsoid (:mod:`veille.territory.alert_area`): ``CIRCLE_SEGMENTS``
    points at the circle's distance from the centre (``pyproj.Geod.fwd``), so every vertex is exactly on the
    circle and the chords sag by r·(1 - cos(π/N)) = 0.03 % of the radius at most, at any
    latitude. ``alert_rules`` select services by CAP category or by event code
    (``valueName`` "veille", value an incident category). An alert is a **broadcast**:
    every agency whose *service area* (the area itself, not what is left of it after
    higher-ranked areas took their share: priorities and tie-breaks only decide incidents)
    shares ground with the alert area receives it, plus the ``municipal_safeguard`` agency
    of every affected municipality (the PCS chain, chosen like an incident without
    coordinates). An area touching the territory only along its border does not affect
    it; an area outside is unroutable.

Targets are deduplicated on (agency, service). For incidents the first rule that asked
wins and targets come in rule order. For alerts the rule is the first one in
``routing.yaml`` order among those that reached the agency for that service (whatever the
order of the infos), and targets come in that rule order, then the rule's service order,
then service-area rank, then the PCS chain by INSEE code. A service nobody provides at the
place yields a warning; the decision is unroutable (``no_agency``) only if no target is left.
"""

from __future__ import annotations

import weakref
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import shapely
from shapely.geometry.base import BaseGeometry

from veille.schemas.models import (
    Alert,
    AlertInfo,
    DispatchTarget,
    Incident,
    IncidentCategory,
    ServiceKind,
    Severity,
)
from veille.territory.alert_area import alert_area
from veille.territory.model import AREA_TOLERANCE, Agency, AgencyLevel, AlertRule, ServiceArea, Territory

# Codes of unroutable decisions (RoutingDecision.unroutable).
UNKNOWN_MUNICIPALITY = "unknown_municipality"
OUTSIDE_TERRITORY = "outside_territory"
NO_RULE = "no_rule"
NO_AGENCY = "no_agency"

VEILLE_EVENT_CODE = "veille"
# Suffix of a target's rule when no service area covers the whole municipality and the one
# covering its largest share was used (no coordinates, or the PCS chain). Rule ids cannot
# contain "+", so a suffixed rule never collides with a real one.
LARGEST_SHARE_SUFFIX = "+largest_share"
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


NEVER_CROSS_BOUNDARY = frozenset({AgencyLevel.departmental, AgencyLevel.state})


def cross_boundary(agency: Agency, municipalities: Collection[str]) -> bool:
    """See the module docstring: a body acting outside its home town, or a home-less pooled body.

    The level is checked first: departmental and state services are never counted, even if
    a hand-built territory gave them a home municipality (the loader refuses that).
    """
    if agency.level in NEVER_CROSS_BOUNDARY:
        return False
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
    """Everything about a territory that does not depend on the event, computed once.

    It does not keep the territory: ``_PLANS`` is keyed by the territory weakly, and a plan
    holding its own key would never let a territory (and its plan) go.
    """

    def __init__(self, territory: Territory) -> None:
        self.needs: dict[tuple[IncidentCategory, Severity], tuple[tuple[str, ServiceKind], ...]] = {}
        for category in IncidentCategory:
            for severity in Severity:
                asked = [(r.id, s) for r in territory.rules.incident_rules if category in r.categories
                         for s in r.services]
                asked += [(r.id, s) for r in territory.rules.escalations if r.applies(category, severity)
                          for s in r.services]
                first: dict[ServiceKind, str] = {}
                for rule_id, service in asked:
                    first.setdefault(service, rule_id)
                self.needs[(category, severity)] = tuple((r, s) for s, r in first.items())

        self.ranked: dict[ServiceKind, tuple[ServiceArea, ...]] = {}
        self.candidates: dict[tuple[str, ServiceKind], tuple[_Candidate, ...]] = {}
        codes = list(territory.municipalities)
        town_geoms = [territory.municipalities[c].geometry for c in codes]
        for service in ServiceKind:
            areas = tuple(sorted(territory.areas_for(service), key=_rank))
            self.ranked[service] = areas
            for area in areas:
                shapely.prepare(area.geometry)
            # Only the areas meeting a town can serve it: a tree finds those pairs at once (every
            # town against every area was quadratic: minutes for a département, benchmarks/scale.py).
            meeting: dict[int, list[int]] = {}
            if areas:
                tree = shapely.STRtree([a.geometry for a in areas])
                towns, hits = tree.query(town_geoms, predicate="intersects")
                for town, hit in zip(towns.tolist(), hits.tolist(), strict=True):
                    meeting.setdefault(town, []).append(hit)
            for k, code in enumerate(codes):
                m = territory.municipalities[code]
                mine = []
                for area in (areas[i] for i in sorted(meeting.get(k, ()))):  # rank order kept
                    whole = area.whole_territory or (area.municipalities is not None
                                                     and code in area.municipalities)
                    m_area = m.geometry.area
                    share = 1.0 if whole else shapely.intersection(m.geometry, area.geometry).area / m_area
                    if share <= AREA_TOLERANCE:
                        continue
                    whole = whole or share >= 1.0 - AREA_TOLERANCE
                    mine.append(_Candidate(area, territory.agencies[area.agency_id], whole, share))
                self.candidates[(code, service)] = tuple(mine)
        self.alert_rule_order = {r.id: i for i, r in enumerate(territory.rules.alert_rules)}
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


_PLANS: weakref.WeakKeyDictionary[Territory, _Plan] = weakref.WeakKeyDictionary()


_last: tuple[weakref.ref[Territory], _Plan] | None = None


def _plan(t: Territory) -> _Plan:
    # The last territory's plan first: a WeakKeyDictionary lookup is Python code, ~1 % of
    # the router's time per incident (profiled), for the one territory a router has.
    global _last
    last = _last
    if last is not None and last[0]() is t:
        return last[1]
    plan = _PLANS.get(t)
    if plan is None:
        plan = _PLANS[t] = _Plan(t)
    _last = (weakref.ref(t), plan)
    return plan


def _pick(cands: tuple[_Candidate, ...], x: float | None, y: float | None) -> _Candidate | None:
    """The candidate (in rank order) covering the point, or without a point the whole town.

    Without a point and no area covering the whole municipality: the largest share (the
    first in rank order among equal shares); the caller marks the rule (see
    :data:`LARGEST_SHARE_SUFFIX`), ``c.whole`` is False on that candidate.
    """
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
        return _unroutable(NO_RULE, f"no routing rule for category {incident.category.value} "
                                    f"at severity {incident.severity.value}", (declared,))
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
    candidates = plan.candidates
    chosen = tuple([_pick(candidates[(where, service)], x, y) for _, service in needs])
    key = (where, where != declared, incident.category, incident.severity, x is None, chosen)
    decision = plan.cache.get(key)
    if decision is None:
        decision = _incident_decision(plan, where, declared, needs, chosen, located=x is not None)
        if len(plan.cache) >= _CACHE_LIMIT:
            plan.cache.clear()
        plan.cache[key] = decision
    return decision


def _incident_decision(plan: _Plan, where: str, declared: str, needs: tuple[tuple[str, ServiceKind], ...],
                       chosen: tuple[_Candidate | None, ...], located: bool) -> RoutingDecision:
    targets: list[DispatchTarget] = []
    missing: list[str] = []
    scope = (where,)
    for (rule, service), cand in zip(needs, chosen, strict=True):
        if cand is None:
            missing.append(f"no {service.value} agency serves {where}")
        else:
            guessed = not located and not cand.whole
            targets.append(plan.target(cand.agency, service, rule + LARGEST_SHARE_SUFFIX if guessed else rule,
                                       scope))
    if not targets:
        return _unroutable(NO_AGENCY, "; ".join(missing), scope)
    return RoutingDecision(targets=tuple(targets), municipalities=scope, warnings=tuple(missing),
                           relocated=where != declared)


# --------------------------------------------------------------------------- alerts


def _meets(prepared: BaseGeometry, geom: BaseGeometry) -> bool:
    # Sharing ground, not just a border line: a shared edge recomputed by GEOS (an area
    # minus a higher-ranked one) leaves float slivers, hence an area test, not touches().
    if not shapely.intersects(prepared, geom):
        return False
    shared = shapely.intersection(prepared, geom).area
    return bool(shared > AREA_TOLERANCE * min(prepared.area, geom.area))


def _alert_services(alert_rules: Sequence[AlertRule], info: AlertInfo) -> list[tuple[str, ServiceKind]]:
    codes = {c.value for c in info.event_codes if c.value_name.lower() == VEILLE_EVENT_CODE}
    first: dict[ServiceKind, str] = {}
    for rule in alert_rules:
        if set(rule.cap_categories) & set(info.category) or {c.value for c in rule.event_codes} & codes:
            for service in rule.services:
                first.setdefault(service, rule.id)
    return [(r, s) for s, r in first.items()]


def route_alert(alert: Alert, territory: Territory) -> RoutingDecision:
    """Targets of a CAP alert: a broadcast (see the module docstring).

    Targets are found first, over every info; the rule and the ``cross_boundary`` flag of
    each target are then derived from the whole alert, so the order of the infos changes
    nothing.
    """
    plan = _plan(territory)
    rules = territory.rules
    affected: set[str] = set()
    warnings: list[str] = []
    per_info: list[tuple[AlertInfo, BaseGeometry, frozenset[str]]] = []
    for info in alert.infos:
        geom, unknown = alert_area(info.areas, territory)
        warnings += [f"geocode INSEE {c} is not in the territory" for c in unknown]
        if geom.is_empty:
            continue
        shapely.prepare(geom)
        towns = frozenset(code for code, m in territory.municipalities.items() if _meets(geom, m.geometry))
        affected |= towns
        per_info.append((info, geom, towns))
    if not affected:
        descs = "; ".join(a.area_desc for info in alert.infos for a in info.areas)
        return _unroutable(OUTSIDE_TERRITORY, f"alert area ({descs}) does not intersect the territory")

    # (agency, service) -> rule ids that reached it; agency -> towns of the infos that reached it.
    reached: dict[tuple[str, ServiceKind], set[str]] = {}
    rank: dict[tuple[str, ServiceKind], int] = {}
    where: dict[str, set[str]] = {}
    for info, geom, towns in per_info:
        for rule, service in _alert_services(rules.alert_rules, info):
            found = False
            for i, area in enumerate(plan.ranked[service]):
                if _meets(area.geometry, geom):
                    found = True
                    key = (area.agency_id, service)
                    reached.setdefault(key, set()).add(rule)
                    rank[key] = min(rank.get(key, i), i)
                    where.setdefault(area.agency_id, set()).update(towns)
            if not found:
                warnings.append(f"no {service.value} agency serves the alert area")

    order = plan.alert_rule_order
    chosen_rule = {key: min(ids, key=order.__getitem__) for key, ids in reached.items()}
    keys = sorted(chosen_rule, key=lambda k: (order[chosen_rule[k]],
                                              rules.alert_rules[order[chosen_rule[k]]].services.index(k[1]),
                                              rank[k]))

    pcs = rules.pcs
    pcs_keys: list[tuple[str, ServiceKind]] = []
    pcs_whole: dict[str, bool] = {}
    if pcs is not None:
        for code in sorted(affected):
            cand = _pick(plan.candidates[(code, pcs.service)], None, None)
            if cand is None:
                warnings.append(f"no {pcs.service.value} agency serves {code}")
                continue
            for _, _, towns in per_info:
                if code in towns:
                    where.setdefault(cand.agency.id, set()).update(towns)
            key = (cand.agency.id, pcs.service)
            if key in chosen_rule:
                continue  # an alert rule already asked this agency for this service
            if key[0] not in pcs_whole:
                pcs_keys.append(key)
            pcs_whole[key[0]] = pcs_whole.get(key[0], False) or cand.whole

    targets: list[DispatchTarget] = []
    for agency_id, service in keys:
        agency = territory.agencies[agency_id]
        targets.append(plan.target(agency, service, chosen_rule[(agency_id, service)], where[agency_id]))
    for agency_id, service in pcs_keys:
        assert pcs is not None
        rule = pcs.id if pcs_whole[agency_id] else pcs.id + LARGEST_SHARE_SUFFIX
        targets.append(plan.target(territory.agencies[agency_id], service, rule, where[agency_id]))
    municipalities = tuple(sorted(affected))
    if not targets:
        return _unroutable(NO_AGENCY, "; ".join(warnings) or "no rule matches the alert", municipalities)
    return RoutingDecision(targets=tuple(targets), municipalities=municipalities,
                           warnings=tuple(dict.fromkeys(warnings)))


__all__ = [
    "LARGEST_SHARE_SUFFIX", "NO_AGENCY", "NO_RULE", "OUTSIDE_TERRITORY", "UNKNOWN_MUNICIPALITY",
    "RoutingDecision", "cross_boundary", "route_alert", "route_incident",
]
