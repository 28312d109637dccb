"""The safeguard plan's alert chain (PCS) as data: ``pcs.yaml`` beside the territory.

Per municipality (INSEE code): the **safeguard cell** (the town hall agency providing
``municipal_safeguard``, and how to reach it), the acknowledgement delay, named **hamlets**
(polygons) and the **representatives** (street, building or hamlet), each with the area they
cover, their contact and their substitutes, in order::

    municipalities:
      "35401":
        cell: {agency: mairie-35401, contact: {email: pcs@montveille.example}}
        activate_from: Severe          # least CAP severity that activates the chain
        ack_minutes: 30
        hamlets: [{id: le-moulin, name: "Le Moulin", polygon: {type: Polygon, ...}}]
        representatives:
          - {id: r-35401-centre, kind: street, area: {streets: ["rue de la Gare"]},
             contact: {email: ..., sms: "+33..."}, substitutes: [r-35401-nord]}

An area is one of ``polygon`` (GeoJSON), ``streets`` (names) or ``hamlet`` (an id of the
municipality's hamlets). The plan holds no street geometry: a street list covers the whole
municipality when an alert is matched (an alert tells rather too many representatives than
too few); the register's addresses, not geometry, say whom they check on.

Parsing is pydantic (errors name the file and the field); :func:`check_plan` reports what only
the territory can tell (unknown towns or agencies, areas outside the town, broken substitute
chains) as the territory's :class:`~veille.territory.model.Issue`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import shapely
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from veille.schemas.models import CapSeverity, InseeCode, ServiceKind
from veille.territory.model import AREA_TOLERANCE, Issue, Territory, TerritoryError

PCS_FILE = "pcs.yaml"
# Representative and hamlet ids end up in signed links and Table keys: a safe slug.
ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
DEFAULT_ACK_MINUTES = 30.0


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _polygon(value: dict[str, Any]) -> dict[str, Any]:
    if value.get("type") not in ("Polygon", "MultiPolygon"):
        raise ValueError(f"expected a GeoJSON Polygon or MultiPolygon, got {value.get('type')!r}")
    try:
        geom = shape(value)
    except Exception as exc:  # shapely raises several types for malformed coordinates
        raise ValueError(f"malformed coordinates: {exc}") from None
    if geom.is_empty or not geom.is_valid:
        raise ValueError("empty or self-intersecting polygon")
    return value


class Contact(_Spec):
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    sms: str | None = Field(default=None, pattern=r"^\+[0-9]{6,15}$")

    @model_validator(mode="after")
    def _reachable(self) -> Contact:
        if not (self.email or self.sms):
            raise ValueError("a contact needs `email` or `sms`")
        return self


class RepresentativeKind(StrEnum):
    street = "street"
    building = "building"
    hamlet = "hamlet"


class Area(_Spec):
    polygon: dict[str, Any] | None = None
    streets: tuple[str, ...] | None = None
    hamlet: str | None = None

    @field_validator("polygon")
    @classmethod
    def _poly(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _polygon(value)

    @model_validator(mode="after")
    def _one(self) -> Area:
        if sum(x is not None for x in (self.polygon, self.streets, self.hamlet)) != 1:
            raise ValueError("give exactly one of `polygon`, `streets` or `hamlet`")
        if self.streets is not None and not self.streets:
            raise ValueError("`streets` is empty")
        return self

    def describe(self) -> str:
        if self.polygon is not None:
            return "polygon"
        if self.streets is not None:
            return f"{len(self.streets)} street(s)"
        return f"hamlet {self.hamlet}"


class Representative(_Spec):
    id: str = Field(pattern=ID_PATTERN)
    kind: RepresentativeKind
    area: Area
    contact: Contact
    substitutes: tuple[str, ...] = ()


class Hamlet(_Spec):
    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    polygon: dict[str, Any]

    _poly = field_validator("polygon")(_polygon)


class Cell(_Spec):
    agency: str = Field(min_length=1)
    contact: Contact


class MunicipalPlan(_Spec):
    cell: Cell
    # The least CAP severity that activates the chain (a yellow heatwave is Moderate, orange
    # Severe); the town hall receives every alert anyway (the ``pcs-chain`` dispatch).
    activate_from: CapSeverity = CapSeverity.Severe
    ack_minutes: float = Field(default=DEFAULT_ACK_MINUTES, gt=0)
    hamlets: tuple[Hamlet, ...] = ()
    representatives: tuple[Representative, ...] = ()

    @model_validator(mode="after")
    def _references(self) -> MunicipalPlan:
        reps = [r.id for r in self.representatives]
        hamlets = {h.id for h in self.hamlets}
        for r in self.representatives:
            for s in r.substitutes:
                if s == r.id:
                    raise ValueError(f"representative {r.id} is their own substitute")
                if s not in reps:
                    raise ValueError(f"representative {r.id}: substitute {s!r} is not a "
                                     "representative of this municipality")
            if r.area.hamlet is not None and r.area.hamlet not in hamlets:
                raise ValueError(f"representative {r.id}: hamlet {r.area.hamlet!r} is not in "
                                 "`hamlets`")
        return self

    def representative(self, rep_id: str) -> Representative | None:
        return next((r for r in self.representatives if r.id == rep_id), None)

    def area_geometry(self, rep: Representative, municipality: BaseGeometry) -> BaseGeometry:
        """The ground ``rep`` covers; a street list, the whole town (see module docstring)."""
        if rep.area.polygon is not None:
            return shape(rep.area.polygon)
        if rep.area.hamlet is not None:
            return shape(next(h.polygon for h in self.hamlets if h.id == rep.area.hamlet))
        return municipality


class PcsPlan(_Spec):
    municipalities: dict[InseeCode, MunicipalPlan] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_ids(self) -> PcsPlan:
        ids = [r.id for p in self.municipalities.values() for r in p.representatives]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"representative ids appear twice: {', '.join(dupes)}")
        return self

    def find(self, rep_id: str) -> tuple[str, Representative] | None:
        for insee, plan in self.municipalities.items():
            rep = plan.representative(rep_id)
            if rep is not None:
                return insee, rep
        return None


def parse_plan(data: Any, file: Path) -> PcsPlan:
    try:
        return PcsPlan.model_validate(data or {})
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "<root>"
            lines.append(f"{file}: {loc}: {e['msg']}")
        raise TerritoryError("\n".join(lines)) from None


def read_plan(path: Path) -> PcsPlan:
    """Parse ``path`` (TerritoryError naming the file and field when it does not parse)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TerritoryError(f"{path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise TerritoryError(f"{path}: not valid YAML: {exc}") from None
    return parse_plan(data, path)


def check_plan(plan: PcsPlan, territory: Territory) -> list[Issue]:
    """Unknown towns and cells are errors; areas outside their town and a chain whose
    representatives have no substitute, warnings; a town without a plan, a note."""
    issues: list[Issue] = []
    for insee, mp in plan.municipalities.items():
        m = territory.municipalities.get(insee)
        if m is None:
            issues.append(Issue("error", "pcs-unknown-municipality",
                                f"{PCS_FILE}: municipality {insee} is not in the territory",
                                municipalities=(insee,)))
            continue
        agency = territory.agencies.get(mp.cell.agency)
        if agency is None or ServiceKind.municipal_safeguard not in agency.services:
            issues.append(Issue("error", "pcs-unknown-cell",
                                f"{PCS_FILE}: {insee}: cell {mp.cell.agency!r} is not an agency "
                                "providing municipal_safeguard", agencies=(mp.cell.agency,),
                                municipalities=(insee,)))
        tolerance = AREA_TOLERANCE * max(m.geometry.area, 1e-12)
        for rep in mp.representatives:
            geom = mp.area_geometry(rep, m.geometry)
            outside = geom.difference(m.geometry).area
            if outside > tolerance:
                share = outside / max(geom.area, 1e-12)
                issues.append(Issue("warning", "pcs-area-outside",
                                    f"{PCS_FILE}: {insee}: representative {rep.id}'s area is "
                                    f"{share:.0%} outside {m.name}", municipalities=(insee,)))
            if not rep.substitutes:
                issues.append(Issue("warning", "pcs-no-substitute",
                                    f"{PCS_FILE}: {insee}: representative {rep.id} has no "
                                    "substitute (a silent one goes straight to the cell)",
                                    municipalities=(insee,)))
    for insee in sorted(set(territory.municipalities) - set(plan.municipalities)):
        issues.append(Issue("info", "pcs-no-plan",
                            f"{PCS_FILE}: municipality {insee} has no PCS chain",
                            municipalities=(insee,)))
    return issues


def representatives_reached(plan: PcsPlan, territory: Territory, insee: str,
                            alert: BaseGeometry) -> tuple[Representative, ...]:
    """The representatives of ``insee`` whose area meets the alert's ground (plan order)."""
    mp = plan.municipalities.get(insee)
    m = territory.municipalities.get(insee)
    if mp is None or m is None or alert.is_empty:
        return ()
    ground = alert.intersection(m.geometry)
    if ground.is_empty or shapely.area(ground) <= AREA_TOLERANCE * m.geometry.area:
        return ()
    return tuple(r for r in mp.representatives
                 if mp.area_geometry(r, m.geometry).intersects(ground))


__all__ = ["DEFAULT_ACK_MINUTES", "PCS_FILE", "Area", "Cell", "Contact", "Hamlet", "MunicipalPlan",
           "PcsPlan", "Representative", "RepresentativeKind", "check_plan", "parse_plan",
           "read_plan", "representatives_reached"]
