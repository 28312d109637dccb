"""A simulated storm for grouping (issue 25, docs/grouping.md): many reports of few flooded spots.

``storm(territory, seed, start)``: by default 2,000 reports over 30 minutes (of ``reported_at``)
on 40 flooded spots, a third of them within 100 m of a municipal boundary (their reports fall on
both sides and each reporter's own town is the one its point is in), every channel, some
reports without coordinates (phone, town-hall desk: not grouped) and a few sensitive ones
mixed in (never grouped). Spots are at least 500 m apart and each report is within 60 m of
its spot, so two reports of one spot are at most 120 m apart (under the 150 m radius) and two
spots never meet: the expected answer is exactly one case per spot. Deterministic from the
seed; the truth (the spot of each report) is returned beside the incidents for the tests.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import shapely

from veille.grouping.cells import distance_m, offset
from veille.producers.simulator import Simulator
from veille.schemas.models import Channel, GeoPoint, Incident, IncidentCategory, Severity
from veille.territory import Territory

SPOT_SPACING_M = 500.0
SPOT_SPREAD_M = 60.0
BOUNDARY_M = 100.0
SENSITIVE_SHARE = 0.01
UNLOCATED = {Channel.phone: 0.5, Channel.town_hall_desk: 0.7}  # share without coordinates


@dataclass(frozen=True)
class Spot:
    lat: float
    lon: float
    near_boundary: bool


@dataclass(frozen=True)
class Storm:
    incidents: list[Incident]  # in reported_at order
    spots: list[Spot]
    spot_of: dict[str, int]  # incident id -> spot index (every report, grouped or not)
    sensitive: set[str]  # incident ids of the sensitive reports (never grouped)
    unlocated: set[str]  # incident ids without coordinates (never grouped)

    @property
    def groupable(self) -> set[str]:
        return set(self.spot_of) - self.sensitive - self.unlocated


def _spots(territory: Territory, rng: random.Random, n: int, boundary_share: float) -> list[Spot]:
    towns = sorted(territory.municipalities)
    lines = []
    for i, a in enumerate(towns):
        for b in towns[i + 1:]:
            line = shapely.intersection(territory.municipalities[a].geometry.boundary,
                                        territory.municipalities[b].geometry.boundary)
            if line.length > 0:
                lines.append(line)
    minx, miny, maxx, maxy = territory.geometry.bounds
    spots: list[Spot] = []
    near = round(n * boundary_share)
    while len(spots) < n:
        on_boundary = len(spots) < near
        if on_boundary:
            p = rng.choice(lines).interpolate(rng.random(), normalized=True)
            lat, lon = offset(p.y, p.x, rng.uniform(-40, 40), rng.uniform(-40, 40))
        else:
            lat, lon = rng.uniform(miny, maxy), rng.uniform(minx, maxx)
        # The whole spread must be inside the territory (a point outside is unroutable).
        ring = [offset(lat, lon, SPOT_SPREAD_M * math.cos(a), SPOT_SPREAD_M * math.sin(a))
                for a in (0, math.pi / 2, math.pi, 3 * math.pi / 2)]
        if not all(territory.locate(x, y) for y, x in [(lat, lon), *ring]):
            continue
        if any(distance_m(lat, lon, s.lat, s.lon) < SPOT_SPACING_M for s in spots):
            continue
        spots.append(Spot(lat, lon, on_boundary))
    return spots


def storm(territory: Territory, seed: int, start: datetime, reports: int = 2000, spots: int = 40,
          minutes: float = 30.0, boundary_share: float = 1 / 3) -> Storm:
    rng = random.Random(seed)
    sim = Simulator(territory, seed=seed, start=start)
    places = _spots(territory, rng, spots, boundary_share)
    channels = list(Channel)
    rows: list[tuple[datetime, Incident, int]] = []
    sensitive: set[str] = set()
    unlocated: set[str] = set()
    for _ in range(reports):
        k = rng.randrange(len(places))
        spot = places[k]
        dist, angle = SPOT_SPREAD_M * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
        lat, lon = offset(spot.lat, spot.lon, dist * math.cos(angle), dist * math.sin(angle))
        town = territory.locate(lon, lat)[0]  # the reporter's own town hall
        at = start + timedelta(seconds=rng.uniform(0, minutes * 60))
        channel = rng.choice(channels)
        if rng.random() < SENSITIVE_SHARE:
            category = rng.choice([IncidentCategory.burglary, IncidentCategory.theft])
        else:
            category = IncidentCategory.flash_flood if rng.random() < 0.85 else IncidentCategory.flood
        severity = Severity.severe if rng.random() < 0.05 else rng.choice([Severity.minor, Severity.moderate])
        if channel == Channel.sensor:
            category = IncidentCategory.flash_flood
        inc = sim.incident(at=at, municipality=town, category=category, severity=severity, channel=channel,
                           location=GeoPoint(lat=lat, lon=lon), lifecycle=False)
        if rng.random() < UNLOCATED.get(channel, 0.0):
            inc = inc.model_copy(update={"location": None})
            unlocated.add(str(inc.id))
        if category not in (IncidentCategory.flash_flood, IncidentCategory.flood):
            sensitive.add(str(inc.id))
        rows.append((at, inc, k))
    rows.sort(key=lambda r: (r[0], str(r[1].id)))
    return Storm([r[1] for r in rows], places, {str(r[1].id): r[2] for r in rows}, sensitive, unlocated)


__all__ = ["Spot", "Storm", "storm"]
