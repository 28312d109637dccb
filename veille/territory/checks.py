"""The territory's checks: broken references, municipality overlaps, coverage gaps and
overlaps per service, categories no rule routes (see :mod:`veille.territory.files`)."""

from __future__ import annotations

import weakref
from typing import Literal

import shapely
from shapely.geometry.base import BaseGeometry

from veille.schemas.models import IncidentCategory, Severity
from veille.territory.grouping_checks import grouping_issues
from veille.territory.model import AREA_TOLERANCE, Agency, AgencyLevel, Issue, Territory

# The checks ask "which municipalities does this piece cover" once per overlap of two service
# areas: against every municipality that was quadratic, 6 minutes for a département of 350
# towns (benchmarks/scale.py). A tree of the municipalities, built once per territory,
# answers with the candidates only, in the same order.
_TREES: weakref.WeakKeyDictionary[Territory, tuple[list[str], list[BaseGeometry], shapely.STRtree]] = (
    weakref.WeakKeyDictionary())


def _municipality_tree(t: Territory) -> tuple[list[str], list[BaseGeometry], shapely.STRtree]:
    if t not in _TREES:
        codes = list(t.municipalities)
        geoms = [t.municipalities[c].geometry for c in codes]
        _TREES[t] = (codes, geoms, shapely.STRtree(geoms))
    return _TREES[t]


def _parts(geom: BaseGeometry, territory: Territory) -> list[tuple[str, float]]:
    """Municipalities a geometry meaningfully covers, with the covered share of each (in the
    territory's order of municipalities)."""
    codes, geoms, tree = _municipality_tree(territory)
    hits = sorted(tree.query(geom, predicate="intersects").tolist())
    wholes = shapely.area([geoms[k] for k in hits])
    pieces = shapely.area(shapely.intersection([geoms[k] for k in hits], geom))
    return [(codes[k], float(piece / whole)) for k, whole, piece in zip(hits, wholes, pieces, strict=True)
            if piece > AREA_TOLERANCE * whole]


def _reference_issues(t: Territory) -> list[Issue]:
    issues: list[Issue] = []
    with_area = {(a.agency_id, a.service) for a in t.service_areas}
    for agency in t.agencies.values():
        if agency.home_municipality and agency.home_municipality not in t.municipalities:
            issues.append(Issue("error", "unknown_municipality",
                                f"agency {agency.id}: home municipality {agency.home_municipality} "
                                "is not in the territory", agencies=(agency.id,),
                                municipalities=(agency.home_municipality,)))
        if agency.level == AgencyLevel.municipal and not agency.home_municipality:
            issues.append(Issue("warning", "no_home_municipality",
                                f"municipal agency {agency.id} has no home_municipality",
                                agencies=(agency.id,)))
        issues += _escalation_issues(t, agency)
        for service in sorted(agency.services):
            if (agency.id, service) not in with_area:
                issues.append(Issue("warning", "no_service_area",
                                    f"agency {agency.id} provides {service} but has no service area",
                                    service=service, agencies=(agency.id,)))
    for area in t.service_areas:
        where = area.source
        provider = t.agencies.get(area.agency_id)
        if provider is None:
            issues.append(Issue("error", "unknown_agency",
                                f"{where}: agency {area.agency_id!r} is not declared",
                                service=area.service, agencies=(area.agency_id,)))
        elif area.service not in provider.services:
            issues.append(Issue("error", "service_not_provided",
                                f"{where}: agency {provider.id} does not provide {area.service} "
                                f"(it provides {', '.join(sorted(provider.services))})",
                                service=area.service, agencies=(provider.id,)))
        if area.unknown_municipalities:
            issues.append(Issue("error", "unknown_municipality",
                                f"{where}: municipalities {', '.join(area.unknown_municipalities)} "
                                "are not in the territory", service=area.service,
                                agencies=(area.agency_id,), municipalities=area.unknown_municipalities))
        if area.geometry_problem:
            issues.append(Issue("warning", "invalid_geometry",
                                f"{where}: polygon was invalid ({area.geometry_problem}); repaired",
                                service=area.service, agencies=(area.agency_id,)))
        if area.geometry.is_empty and not area.unknown_municipalities:
            issues.append(Issue("error", "empty_area", f"{where}: polygon does not meet the territory",
                                service=area.service, agencies=(area.agency_id,)))
    return issues


def _escalation_issues(t: Territory, agency: Agency) -> list[Issue]:
    issues = []
    for key, target in agency.escalation_to:
        if key != "default" and key not in {s.value for s in agency.services}:
            issues.append(Issue("error", "bad_escalation", f"agency {agency.id}: escalation_to names "
                                f"service {key!r}, which it does not provide", agencies=(agency.id,)))
        if target not in t.agencies:
            issues.append(Issue("error", "bad_escalation", f"agency {agency.id}: escalation_to "
                                f"{target!r} is not an agency of the territory", agencies=(agency.id,)))
        elif target == agency.id:
            issues.append(Issue("error", "bad_escalation",
                                f"agency {agency.id}: escalates to itself", agencies=(agency.id,)))
    return issues


def _geometry_issues(t: Territory) -> list[Issue]:
    issues: list[Issue] = []
    munis = list(t.municipalities.values())
    tree = shapely.STRtree([m.geometry for m in munis])
    left, right = tree.query([m.geometry for m in munis], predicate="intersects")
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        a, b = munis[i], munis[j]
        if a.insee < b.insee:
            shared = shapely.intersection(a.geometry, b.geometry).area
            if shared > AREA_TOLERANCE * min(a.geometry.area, b.geometry.area):
                issues.append(Issue("error", "municipality_overlap",
                                    f"municipalities {a.insee} and {b.insee} overlap",
                                    municipalities=(a.insee, b.insee)))
    polys = getattr(t.geometry, "geoms", [t.geometry])
    min_hole = AREA_TOLERANCE * t.geometry.area
    holes = [r for p in polys for r in p.interiors if shapely.Polygon(r).area > min_hole]
    if holes:
        issues.append(Issue("warning", "territory_hole",
                            f"{len(holes)} hole(s) between municipalities: points there are outside "
                            "the territory"))
    return issues


def _coverage_issues(t: Territory) -> list[Issue]:
    issues: list[Issue] = []
    for service in sorted(t.rules.required_services()):
        policy = t.policy(service)
        areas = t.areas_for(service)
        covered = shapely.union_all([a.geometry for a in areas]) if areas else shapely.Polygon()
        gap_parts = _parts(shapely.difference(t.geometry, covered), t)
        if gap_parts:
            where = ", ".join(f"{c} {t.municipalities[c].name} ({share:.0%})" for c, share in gap_parts)
            level: Literal["error", "warning"] = "warning" if policy.gaps == "allow" else "error"
            issues.append(Issue(level, "gap", f"{service}: no agency covers {where}", service=service,
                                municipalities=tuple(c for c, _ in gap_parts)))
        # Only the pairs whose areas meet can overlap: a tree finds them, in (i, j) order.
        left, right = shapely.STRtree([a.geometry for a in areas]).query(
            [a.geometry for a in areas], predicate="intersects") if areas else ([], [])
        pairs = sorted((int(i), int(j)) for i, j in zip(left, right, strict=True)
                       if i < j and areas[i].agency_id != areas[j].agency_id)
        # Areas that only touch (neighbouring towns' services) share no ground: no part to look for.
        shared = shapely.intersection([areas[i].geometry for i, _ in pairs],
                                      [areas[j].geometry for _, j in pairs])
        for (i, j), piece in zip(pairs, shared, strict=True):
            a, b = areas[i], areas[j]
            if piece.area <= 0:
                continue
            parts = _parts(piece, t)
            if not parts:
                continue
            codes = tuple(c for c, _ in parts)
            pair = tuple(sorted((a.agency_id, b.agency_id)))
            where = ", ".join(f"{c} {t.municipalities[c].name}" for c in codes)
            if a.priority != b.priority:
                top = a if a.priority > b.priority else b
                issues.append(Issue("info", "overlap_resolved",
                                    f"{service}: {pair[0]} and {pair[1]} overlap on {where}; "
                                    f"{top.agency_id} has priority", service=service,
                                    agencies=pair, municipalities=codes))
            else:
                lvl: Literal["error", "warning"] = "warning" if policy.overlaps == "allow" else "error"
                issues.append(Issue(lvl, "overlap",
                                    f"{service}: {pair[0]} and {pair[1]} both cover {where} "
                                    f"(same priority {a.priority})", service=service,
                                    agencies=pair, municipalities=codes))
    return issues


def _rule_issues(t: Territory) -> list[Issue]:
    """Categories that no rule routes, at every severity or below some severity.

    An escalation also routes (``route_incident`` dispatches its services even when no
    incident rule names the category), so a category only escalations cover is routable
    from their ``min_severity`` up, and the warning says so.
    """
    never: list[str] = []
    partly: list[str] = []
    for category in IncidentCategory:
        if any(category in r.categories for r in t.rules.incident_rules):
            continue
        routed = [s for s in Severity if any(e.applies(category, s) for e in t.rules.escalations)]
        if not routed:
            never.append(category.value)
        elif len(routed) < len(Severity):
            lowest = min(routed, key=lambda s: s.rank)
            below = [s.value for s in Severity if s.rank < lowest.rank]
            escalations = sorted({e.id for e in t.rules.escalations if e.applies(category, lowest)})
            partly.append(f"{category.value} below severity {lowest.value} ({', '.join(below)}; "
                          f"routed from {lowest.value} up by {', '.join(escalations)})")
    issues = []
    if never:
        issues.append(Issue("warning", "no_rule",
                            f"no incident rule or escalation for categories {', '.join(never)}: "
                            "they are unroutable at every severity"))
    if partly:
        issues.append(Issue("warning", "no_rule",
                            f"no incident rule for {'; '.join(partly)}: unroutable below that severity"))
    return issues


def validate_territory(t: Territory) -> list[Issue]:
    """Every problem of a territory, errors first (see the module docstring)."""
    issues = [*_reference_issues(t), *_geometry_issues(t), *_coverage_issues(t), *_rule_issues(t),
              *grouping_issues(t.rules.grouping)]
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(issues, key=lambda i: order[i.level])

