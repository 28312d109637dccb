"""The ground a CAP alert covers: its polygons, circles and INSEE geocodes as one geometry.

See :mod:`veille.territory.routing` for how the area is used (which towns it affects).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import shapely
from pyproj import Geod
from shapely.geometry.base import BaseGeometry

from veille.schemas.models import AlertArea
from veille.territory.model import Territory

INSEE_GEOCODE = "INSEE"
# A regular N-gon inscribed in a circle of radius r is at least r*cos(pi/N) from the centre:
# N = 128 keeps the whole boundary within 0.03 % of the radius (0.1 % is the requirement).
CIRCLE_SEGMENTS = 128
_GEOD = Geod(ellps="WGS84")


def circle_polygon(lat: float, lon: float, radius_km: float, segments: int = CIRCLE_SEGMENTS) -> BaseGeometry:
    """A circle of ``radius_km`` around (lat, lon) as a WGS84 polygon (see module docstring).

    The vertices are the points at ``radius_km`` along the geodesics leaving the centre at
    ``segments`` evenly spaced azimuths (WGS84 ellipsoid), so the polygon is a circle on the
    ground at any latitude, not an ellipse in degrees.
    """
    azimuths = np.linspace(0.0, 360.0, segments, endpoint=False)
    lons, lats, _ = _GEOD.fwd(np.full(segments, lon), np.full(segments, lat), azimuths,
                              np.full(segments, radius_km * 1000.0))
    # Keep the ring continuous next to the antimeridian (Wallis-et-Futuna): around the centre.
    lons = lon + (np.asarray(lons) - lon + 180.0) % 360.0 - 180.0
    return shapely.Polygon(np.column_stack([lons, lats]))


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


__all__ = ["CIRCLE_SEGMENTS", "INSEE_GEOCODE", "alert_area", "circle_polygon"]
