"""Who gets a refused dispatch next, and who supervises an overdue one: pure functions, no I/O.

RE-ROUTING (a body answered ``rejected`` with reason ``not_competent`` or ``wrong_location``).
The next body is the first of these steps that yields a body **that has not refused the
incident already** (every body that refused it, for any service, is excluded):

1. ``next_area``: the next service area, by the routing order (highest priority, smallest
   area, lowest agency id), among the areas serving the incident's municipality that hold
   its point, for the refused service. Without coordinates: the areas covering the whole
   municipality, in the same order.
2. ``neighbour``: when the refusing body sent a corrected location, the same service of the
   body whose area holds that location (the municipality holding the point, as routing
   decides it; the areas serving it that hold the point, in the routing order).
3. ``safeguard``: the mayor's safeguard service (``municipal_safeguard``, the PCS chain) of
   the municipality (the corrected location's, when there is one inside the territory),
   chosen like a dispatch without coordinates.
4. ``monitoring_cell``: the monitoring cell serving that municipality, chosen the same way:
   the last resort.

LOOP GUARD: every dispatch has a hop count (0 for the router's own dispatches, +1 per
re-routing). A refusal of a dispatch at hop ``max_hops`` (:data:`MAX_HOPS`, 3) goes straight
to step 4 (``hop_limit``): the monitoring cell, never a fifth body. When every step is
exhausted (the cell itself refused), there is no next body: the caller counts it.

The new dispatch keeps the refused one's service in steps 1-2 and takes the step's service
in steps 3-4; its rule is the refused dispatch's rule (without any ``+`` suffix) followed by
``+rerouted`` (:data:`REROUTED_SUFFIX`), and its ``cross_boundary`` flag follows routing's
rule for the municipality of the step.

ESCALATION: an agency's ``escalation_to`` (``jurisdiction.yaml``: one agency id, or one per
service with a ``default``) names its supervisor; :func:`supervisor_of` reads it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import shapely

from veille.schemas.models import DispatchTarget, GeoPoint, ServiceKind
from veille.territory.model import Territory
from veille.territory.routing import _Candidate, _plan, cross_boundary

MAX_HOPS = 3
REROUTED_SUFFIX = "+rerouted"
STEPS = ("next_area", "neighbour", "safeguard", "monitoring_cell", "hop_limit")


@dataclass(frozen=True, slots=True)
class NextBody:
    target: DispatchTarget
    step: str  # one of STEPS: which rule chose it
    hop: int  # the new dispatch's hop count
    municipality: str  # the municipality the step looked at


def rerouted_rule(rule: str) -> str:
    return rule.split("+", 1)[0] + REROUTED_SUFFIX


def place_of(territory: Territory, declared: str, point: GeoPoint | None) -> str | None:
    """The municipality routing would use for this point (None: the point is outside)."""
    if point is None:
        return declared if declared in territory.municipalities else None
    hits = territory.locate(point.lon, point.lat)
    if not hits:
        return None
    return declared if declared in hits else hits[0]


def _holding(cands: tuple[_Candidate, ...], point: GeoPoint | None) -> list[_Candidate]:
    if point is None:
        return [c for c in cands if c.whole]
    return [c for c in cands if c.whole or shapely.intersects_xy(c.area.geometry, point.lon, point.lat)]


def _town_pick(cands: tuple[_Candidate, ...], refused: Collection[str]) -> _Candidate | None:
    """Like a dispatch without coordinates: whole-town areas in rank order, else the largest share."""
    left = [c for c in cands if c.agency.id not in refused]
    whole = [c for c in left if c.whole]
    if whole:
        return whole[0]
    return max(left, key=lambda c: c.share, default=None)


def next_body(territory: Territory, *, municipality: str, location: GeoPoint | None,
              corrected: GeoPoint | None, service: ServiceKind, rule: str, refused: Collection[str],
              hop: int, max_hops: int = MAX_HOPS) -> NextBody | None:
    """The body a refused dispatch goes to next (module docstring), None when none is left.

    ``hop`` is the refused dispatch's hop count, ``refused`` every agency that refused the
    incident (the refusing one included).
    """
    plan = _plan(territory)
    new_hop = hop + 1
    where = place_of(territory, municipality, location)
    fixed = place_of(territory, municipality, corrected) if corrected is not None else None
    town = fixed or where
    if town is None:
        return None

    def chosen(c: _Candidate, svc: ServiceKind, step: str, place: str) -> NextBody:
        target = DispatchTarget(agency_id=c.agency.id, service=svc, rule=rerouted_rule(rule),
                                cross_boundary=cross_boundary(c.agency, (place,)))
        return NextBody(target, step, new_hop, place)

    if new_hop <= max_hops:
        if where is not None:
            for c in _holding(plan.candidates.get((where, service), ()), location):
                if c.agency.id not in refused:
                    return chosen(c, service, "next_area", where)
        if fixed is not None:
            for c in _holding(plan.candidates.get((fixed, service), ()), corrected):
                if c.agency.id not in refused:
                    return chosen(c, service, "neighbour", fixed)
        safeguard = _town_pick(plan.candidates.get((town, ServiceKind.municipal_safeguard), ()), refused)
        if safeguard is not None:
            return chosen(safeguard, ServiceKind.municipal_safeguard, "safeguard", town)
    cell = _town_pick(plan.candidates.get((town, ServiceKind.monitoring_cell), ()), refused)
    if cell is None:
        return None
    step = "monitoring_cell" if new_hop <= max_hops else "hop_limit"
    return chosen(cell, ServiceKind.monitoring_cell, step, town)


def supervisor_of(territory: Territory, agency_id: str, service: ServiceKind) -> str | None:
    """Who an overdue dispatch of (agency, service) escalates to; None: nobody is declared."""
    agency = territory.agencies.get(agency_id)
    if agency is None:
        return None
    target = agency.supervisor(service)
    return target if target in territory.agencies and target != agency_id else None


_SUPERVISING = (ServiceKind.municipal_safeguard, ServiceKind.monitoring_cell)


def supervisor_service(territory: Territory, supervisor: str, service: ServiceKind) -> ServiceKind:
    """The service an escalation asks of the supervisor: the same one if it provides it, else its
    safeguard or monitoring service, else the first of its services by name."""
    provided = territory.agencies[supervisor].services
    if service in provided:
        return service
    return next((s for s in _SUPERVISING if s in provided), min(provided, key=lambda s: s.value))


__all__ = ["MAX_HOPS", "REROUTED_SUFFIX", "STEPS", "NextBody", "next_body", "place_of", "rerouted_rule",
           "supervisor_of",
           "supervisor_service"]
