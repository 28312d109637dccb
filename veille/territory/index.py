"""Point -> municipalities: the spatial index routing asks for every located event."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import shapely

if TYPE_CHECKING:
    from veille.territory.model import Municipality


class MunicipalityIndex:
    """Point -> municipalities covering it.

    An STRtree answers exactly (boundary points included, hence several answers on a
    shared edge); a grid of cells lying strictly inside one municipality answers most
    points without touching GEOS, which keeps routing above 100k decisions/s.
    """

    # Cells are widened by this much (degrees) before the interior test so that a point
    # rounded into a neighbouring cell can never be a boundary point.
    _MARGIN = 1e-9

    def __init__(self, municipalities: Sequence[Municipality]) -> None:
        self._codes = [m.insee for m in municipalities]
        geoms = [m.geometry for m in municipalities]
        for g in geoms:
            shapely.prepare(g)
        self._tree = shapely.STRtree(geoms)
        self._single = {c: (c,) for c in self._codes}
        minx, miny, maxx, maxy = shapely.total_bounds(geoms)
        # At least 128 cells a side: with 64, one point in eight of the example territory fell
        # in a cell crossing a border and went to the STRtree (~10 µs); with 128, one in sixteen
        # (256: one in thirty, but 0.2 s to build, which tests building many territories felt).
        side = max(128, min(1024, int(24 * math.sqrt(len(geoms)))))
        self._minx, self._miny, self._nx, self._ny = float(minx), float(miny), side, side
        dx, dy = (maxx - minx) / side or 1.0, (maxy - miny) / side or 1.0
        self._inv_dx, self._inv_dy = 1.0 / dx, 1.0 / dy
        ii, jj = [a.ravel() for a in np.meshgrid(range(side), range(side))]
        m = self._MARGIN
        cells = shapely.box(minx + ii * dx - m, miny + jj * dy - m,
                            minx + (ii + 1) * dx + m, miny + (jj + 1) * dy + m)
        cell_idx, geom_idx = self._tree.query(cells, predicate="intersects")
        counts: dict[int, int] = {}
        for c in cell_idx.tolist():
            counts[c] = counts.get(c, 0) + 1
        lone = [(c, g) for c, g in zip(cell_idx.tolist(), geom_idx.tolist(), strict=True) if counts[c] == 1]
        self._cells: list[str | None] = [None] * (side * side)
        if lone:
            inside = shapely.contains_properly([geoms[g] for _, g in lone], [cells[c] for c, _ in lone])
            for (c, g), ok in zip(lone, inside.tolist(), strict=True):
                if ok:
                    self._cells[int(jj[c]) * side + int(ii[c])] = self._codes[g]

    def locate(self, lon: float, lat: float) -> tuple[str, ...]:
        """INSEE codes of the municipalities whose polygon covers the point, sorted."""
        if lon >= self._minx and lat >= self._miny:
            i = int((lon - self._minx) * self._inv_dx)
            j = int((lat - self._miny) * self._inv_dy)
            if i < self._nx and j < self._ny:
                code = self._cells[j * self._nx + i]
                if code is not None:
                    return self._single[code]
        hits = self._tree.query(shapely.Point(lon, lat), predicate="intersects")
        return tuple(sorted(self._codes[k] for k in hits.tolist()))

