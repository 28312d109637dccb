"""H3 cells and distances for grouping (docs/grouping.md, "Partitioning").

Why H3 (Uber's hexagonal grid, v4): every cell has six neighbours at the same distance (a
geohash square has eight, at two distances), cells of one resolution have nearly one size
over the territory, and ``latlng_to_cell`` is a C call (~1 µs) cheap enough for the router's
hot path. Its cell ids are stable strings: they are the Kafka keys of ``<prefix>.grouping``.
"""

from __future__ import annotations

import math

import h3

EARTH_RADIUS_M = 6_371_008.8
# Points sampled on a circle to find the cells a disk meets. A sliver of a cell between two
# samples is at most r·(1 - cos(π/N)) deep: 0.5 % of the radius (under a metre at 150 m).
CIRCLE_SAMPLES = 32


def cell_of(lat: float, lon: float, resolution: int) -> str:
    return str(h3.latlng_to_cell(lat, lon, resolution))


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine): exact enough at a few hundred metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    """The point ``north_m``/``east_m`` metres away (local plane: radii of a few hundred metres)."""
    dlat = math.degrees(north_m / EARTH_RADIUS_M)
    dlon = math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians(lat))))
    return lat + dlat, lon + dlon


def cells_within(lat: float, lon: float, radius_m: float, resolution: int) -> tuple[str, ...]:
    """The cells the disk of ``radius_m`` around the point meets, sorted (its own cell included)."""
    found = {cell_of(lat, lon, resolution)}
    for i in range(CIRCLE_SAMPLES):
        angle = 2 * math.pi * i / CIRCLE_SAMPLES
        found.add(cell_of(*offset(lat, lon, radius_m * math.cos(angle), radius_m * math.sin(angle)),
                          resolution))
    return tuple(sorted(found))


def decider_cell(lat: float, lon: float, radius_m: float, resolution: int) -> str:
    """The cell that decides a report's case: the lowest of the cells its disk meets.

    Two reports within ``radius_m`` of each other near the border of two cells both meet both
    cells, so they are decided by the same one whatever their order of arrival (docs/grouping.md).
    """
    return cells_within(lat, lon, radius_m, resolution)[0]


__all__ = ["cell_of", "cells_within", "decider_cell", "distance_m", "offset"]
