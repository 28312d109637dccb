"""The choice of the next body after a refusal, against a reference written from its rules.

``reference_next`` is the rules of docs/rerouting.md ("Who gets a refused dispatch") written a
second time, by brute force with shapely predicates over every area (nothing indexed or
planned in advance); ``next_body`` must agree with it on random territories (the routing
oracle's generator, plus monitoring cells and safeguard services), random points, corrected
locations, sets of bodies that already refused and hop counts.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import shapely
from hypothesis import event, given
from hypothesis import strategies as st
from test_routing_oracle import (
    CELL,
    COORDS,
    ORACLE,
    SERVICES,
    X0,
    Y0,
    areas_of,
    is_cross_boundary,
    load,
    rank,
    territories,
)

from veille.schemas.models import GeoPoint, ServiceKind
from veille.territory import Territory
from veille.territory.reroute import MAX_HOPS, next_body

Choice = tuple[str, str, str, str, int, bool]  # agency, service, rule, step, hop, cross_boundary


def place(t: Territory, declared: str, point: GeoPoint | None) -> str | None:
    """Routing's place: the declared town if it holds the point, else the lowest code holding it."""
    if point is None:
        return declared if declared in t.municipalities else None
    p = shapely.Point(point.lon, point.lat)
    covering = sorted(code for code, m in t.municipalities.items() if m.geometry.covers(p))
    if not covering:
        return None
    return declared if declared in covering else covering[0]


def holding(t: Territory, service: ServiceKind, town: str, point: GeoPoint | None) -> list[Any]:
    """Areas serving the town (sharing ground with it) that hold the point (without one: the
    whole town), best first."""
    from test_routing_oracle import TOLERANCE, shares_ground

    geom = t.municipalities[town].geometry
    serving = [a for a in areas_of(t, service) if shares_ground(a.geometry, geom)]
    if point is None:
        found = [a for a in serving
                 if shapely.intersection(a.geometry, geom).area >= (1 - TOLERANCE) * geom.area]
    else:
        found = [a for a in serving if a.geometry.covers(shapely.Point(point.lon, point.lat))]
    return sorted(found, key=rank)


def by_town(t: Territory, service: ServiceKind, town: str, refused: set[str]) -> Any:
    """Like a dispatch without coordinates, among the bodies that did not refuse."""
    from test_routing_oracle import TOLERANCE, shares_ground

    geom = t.municipalities[town].geometry
    serving = [a for a in areas_of(t, service) if shares_ground(a.geometry, geom)
               and a.agency_id not in refused]
    whole = [a for a in serving if shapely.intersection(a.geometry, geom).area >= (1 - TOLERANCE) * geom.area]
    if whole:
        return min(whole, key=rank)
    if serving:
        return min(serving, key=lambda a: (-shapely.intersection(a.geometry, geom).area, rank(a)))
    return None


def reference_next(t: Territory, declared: str, point: GeoPoint | None, corrected: GeoPoint | None,
                   service: ServiceKind, rule: str, refused: set[str], hop: int) -> Choice | None:
    new_rule = rule.split("+")[0] + "+rerouted"

    def choice(area: Any, svc: ServiceKind, step: str, town: str) -> Choice:
        agency = t.agencies[area.agency_id]
        return (agency.id, svc.value, new_rule, step, hop + 1, is_cross_boundary(agency, {town}))

    where = place(t, declared, point)
    fixed = place(t, declared, corrected) if corrected is not None else None
    town = fixed or where
    if town is None:
        return None
    if hop + 1 <= MAX_HOPS:
        if where is not None:
            for area in holding(t, service, where, point):
                if area.agency_id not in refused:
                    return choice(area, service, "next_area", where)
        if fixed is not None:
            for area in holding(t, service, fixed, corrected):
                if area.agency_id not in refused:
                    return choice(area, service, "neighbour", fixed)
        safeguard = by_town(t, ServiceKind.municipal_safeguard, town, refused)
        if safeguard is not None:
            return choice(safeguard, ServiceKind.municipal_safeguard, "safeguard", town)
    cell = by_town(t, ServiceKind.monitoring_cell, town, refused)
    if cell is None:
        return None
    step = "monitoring_cell" if hop + 1 <= MAX_HOPS else "hop_limit"
    return choice(cell, ServiceKind.monitoring_cell, step, town)


@st.composite
def with_cells(draw: st.DrawFn) -> dict[str, Any]:
    """A random territory, often with one or two monitoring cells (everywhere or on a few towns)."""
    files = draw(territories())
    jurisdiction = files["jurisdiction.yaml"]
    for k in range(draw(st.integers(0, 2))):
        cell_id = f"cell-{k}"
        jurisdiction["agencies"].append({"id": cell_id, "name": cell_id, "level": "intercommunal",
                                         "services": ["monitoring_cell"], "home_municipality": None})
        area: dict[str, Any] = {"agency": cell_id, "service": "monitoring_cell", "priority": k}
        if draw(st.booleans()):
            area["all"] = True
        else:
            area["municipalities"] = draw(st.lists(st.sampled_from(files["codes"]), min_size=1, unique=True))
        jurisdiction["service_areas"].append(area)
    return files


POINTS = st.one_of(st.none(), st.builds(lambda x, y: GeoPoint(lon=X0 + x * CELL, lat=Y0 + y * CELL),
                                        COORDS, COORDS))


@ORACLE
@given(data=st.data(), files=with_cells())
def test_next_body_agrees_with_the_documented_rules(data: st.DataObject, files: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t = load(files, Path(tmp))
    agencies = sorted(t.agencies)
    for _ in range(16):
        declared = data.draw(st.sampled_from(files["codes"]))
        point, corrected = data.draw(POINTS), data.draw(POINTS)
        service = data.draw(st.sampled_from(SERVICES))
        rule = data.draw(st.sampled_from(["inc-0", "inc-1+largest_share", "inc-2+rerouted"]))
        refused = set(data.draw(st.lists(st.sampled_from(agencies), max_size=4, unique=True)))
        hop = data.draw(st.integers(0, MAX_HOPS + 1))
        expected = reference_next(t, declared, point, corrected, service, rule, refused, hop)
        got = next_body(t, municipality=declared, location=point, corrected=corrected, service=service,
                        rule=rule, refused=refused, hop=hop)
        observed = None if got is None else (
            got.target.agency_id, got.target.service.value, got.target.rule, got.step, got.hop,
            got.target.cross_boundary)
        assert observed == expected, (declared, point, corrected, service, refused, hop)
        event(got.step if got else "none")
        if got is not None:
            assert got.target.agency_id not in refused  # never back to a body that refused

