"""Bounds on what a CAP alert may ask the router to compute, checked by the Alert model.

Unbounded geometry is a denial of service: a 22 kB self-intersecting polygon once stalled the
router for minutes. The bounds are deterministic (every router and every replay gives the same
answer) where a wall-clock budget could not interrupt a GEOS call anyway; beyond them an alert
is ``too_complex`` (422 at the intake, a dead letter at the router).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from veille.schemas.models import AlertArea

# Real alerts are far below: a department has < 700 municipalities, a
# hand-drawn flood polygon a few hundred vertices. Beyond them an alert is ``too_complex``.
MAX_INFOS = 10
MAX_AREAS_PER_INFO = 100
MAX_ALERT_SHAPES = 200  # polygons + circles, over all infos and areas
MAX_ALERT_GEOCODES = 2000
MAX_POLYGON_VERTICES = 5000
MAX_ALERT_VERTICES = 10_000
# Repairing self-intersecting rings costs with the square of their crossings: only small
# ones are repaired (veille/territory/alert_area.py), at most this many points of them per alert.
MAX_INVALID_VERTICES = 200


def too_complex(message: str) -> PydanticCustomError:
    # A distinct error type, so consumers report ``too_complex`` rather than a generic error.
    return PydanticCustomError("too_complex", message)


def check_alert_geometry(all_areas: Iterable[AlertArea]) -> None:
    """Raise ``too_complex`` when an alert's areas, all infos together, exceed the bounds."""
    import shapely  # only alerts need it; keeps the models cheap to import elsewhere

    areas = list(all_areas)
    rings = [ring for area in areas for ring in area.polygons]
    shapes = len(rings) + sum(len(a.circles) for a in areas)
    if shapes > MAX_ALERT_SHAPES:
        raise too_complex(f"{shapes} polygons and circles (at most {MAX_ALERT_SHAPES} per alert)")
    geocodes = sum(len(a.geocodes) for a in areas)
    if geocodes > MAX_ALERT_GEOCODES:
        raise too_complex(f"{geocodes} geocodes (at most {MAX_ALERT_GEOCODES} per alert)")
    vertices = sum(map(len, rings))
    if vertices > MAX_ALERT_VERTICES:
        raise too_complex(f"the alert's polygons have {vertices} points (at most {MAX_ALERT_VERTICES})")
    invalid = sum(len(ring) for ring in rings if not shapely.Polygon([(p.lon, p.lat) for p in ring]).is_valid)
    if invalid > MAX_INVALID_VERTICES:
        raise too_complex(
            f"self-intersecting polygons with {invalid} points in all (only {MAX_INVALID_VERTICES} "
            "are repaired per alert; send valid polygons)")
