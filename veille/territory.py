"""The territory and its jurisdiction rules: the one place that says who acts where.

A territory is a directory of three files:

``municipalities.geojson``
    FeatureCollection, one (Multi)Polygon per municipality, properties ``insee``, ``name``,
    ``population``. The polygons must tile the territory: a point in no polygon is
    *outside* the territory, a point on a shared edge belongs to several (see
    :mod:`veille.streams.routing` for how that tie is broken).
``jurisdiction.yaml``
    ``intercommunality``, ``agencies`` (id, name, level, services, home_municipality; a
    departmental or state agency may not have a home municipality: refused on load, since
    such services are never counted as acting across boundaries) and
    ``service_areas`` (agency, service, and one of ``municipalities: [INSEE...]``,
    ``all: true`` or a GeoJSON ``polygon``; optional ``priority``, default 0). Optional
    ``policies: {<service>: {gaps: error|allow, overlaps: error|allow}}``.
``routing.yaml``
    rules as data: ``incident_rules`` (categories -> services), ``escalations`` (extra
    services from a severity up), ``alert_rules`` (CAP categories / ``veille`` event codes
    -> services) and ``pcs`` (the service that receives every alert on each affected town).

Loading parses the files with pydantic (errors name the file and the field), resolves every
service area to a shapely geometry clipped to the territory and builds a spatial index.
:func:`validate_territory` then checks coverage: a *gap* is a part of the territory where no
agency provides a service some rule needs; an *overlap* is two agencies providing the same
service on the same ground with the same priority (different priorities are a declared
precedence, not an error).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeVar

import numpy as np
import shapely
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from veille.schemas.models import (
    CapCategory,
    IncidentCategory,
    InseeCode,
    ServiceKind,
    Severity,
)

MUNICIPALITIES_FILE = "municipalities.geojson"
JURISDICTION_FILE = "jurisdiction.yaml"
ROUTING_FILE = "routing.yaml"

# Agency ids end up in topic names (<prefix>.dispatch.<id>): keep them to a safe slug.
AGENCY_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
RULE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
# Relative area below which a difference/intersection is float noise from shared edges.
AREA_TOLERANCE = 1e-7


class TerritoryError(ValueError):
    """The territory files cannot be loaded (or, when strict, do not pass the checks)."""

    def __init__(self, message: str, issues: Sequence[Issue] = ()) -> None:
        super().__init__(message)
        self.issues = tuple(issues)


class AgencyLevel(StrEnum):
    municipal = "municipal"
    intercommunal = "intercommunal"
    departmental = "departmental"
    state = "state"


# --------------------------------------------------------------------------- file models


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_geojson_polygon(value: dict[str, Any]) -> dict[str, Any]:
    if value.get("type") not in ("Polygon", "MultiPolygon"):
        raise ValueError(f"expected a GeoJSON Polygon or MultiPolygon, got {value.get('type')!r}")
    try:
        geom = shape(value)
    except Exception as exc:  # shapely raises several types for malformed coordinates
        raise ValueError(f"malformed coordinates: {exc}") from None
    if geom.is_empty:
        raise ValueError("empty geometry")
    return value


class MunicipalityProperties(BaseModel):
    # GeoJSON exports carry many extra properties (area, code postal...): ignore them.
    model_config = ConfigDict(extra="ignore", frozen=True)
    insee: InseeCode
    name: str = Field(min_length=1, max_length=200)
    population: int = Field(default=0, ge=0)


class MunicipalityFeature(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    type: Literal["Feature"]
    properties: MunicipalityProperties
    geometry: dict[str, Any]

    _geometry = field_validator("geometry")(_check_geojson_polygon)


class MunicipalityCollection(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    type: Literal["FeatureCollection"]
    features: tuple[MunicipalityFeature, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> MunicipalityCollection:
        seen: set[str] = set()
        for f in self.features:
            if f.properties.insee in seen:
                raise ValueError(f"municipality {f.properties.insee} appears twice")
            seen.add(f.properties.insee)
        return self


class AgencySpec(_Spec):
    id: str = Field(pattern=AGENCY_ID_PATTERN)
    name: str = Field(min_length=1, max_length=300)
    level: AgencyLevel
    services: tuple[ServiceKind, ...] = Field(min_length=1)
    home_municipality: InseeCode | None = None

    @model_validator(mode="after")
    def _no_home_above_the_towns(self) -> AgencySpec:
        # The cross-boundary indicator never counts departmental and state services; a home
        # town on them would say otherwise (they would count everywhere but there): refuse.
        if self.home_municipality is not None and self.level in (AgencyLevel.departmental,
                                                                  AgencyLevel.state):
            raise ValueError(
                f"agency {self.id}: a {self.level.value} agency cannot have a home_municipality "
                f"(got {self.home_municipality!r}); departmental and state services are never "
                "counted as acting across boundaries, remove the field or set it to null")
        return self


class ServiceAreaSpec(_Spec):
    agency: str = Field(min_length=1)
    service: ServiceKind
    municipalities: tuple[InseeCode, ...] | None = None
    all: bool = False
    polygon: dict[str, Any] | None = None
    # Higher wins where areas of the same service overlap (e.g. a syndicate over town halls).
    priority: int = 0

    @field_validator("polygon")
    @classmethod
    def _polygon(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _check_geojson_polygon(value)

    @model_validator(mode="after")
    def _one_shape(self) -> ServiceAreaSpec:
        given = [self.municipalities is not None, self.all, self.polygon is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of `municipalities`, `all: true` or `polygon`")
        if self.municipalities is not None and not self.municipalities:
            raise ValueError("`municipalities` is empty")
        return self


class ServicePolicy(_Spec):
    gaps: Literal["error", "allow"] = "error"
    overlaps: Literal["error", "allow"] = "error"


class JurisdictionSpec(_Spec):
    intercommunality: str = Field(min_length=1)
    departement: str | None = None
    agencies: tuple[AgencySpec, ...] = Field(min_length=1)
    service_areas: tuple[ServiceAreaSpec, ...] = ()
    policies: dict[ServiceKind, ServicePolicy] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique(self) -> JurisdictionSpec:
        ids = [agency.id for agency in self.agencies]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate agency ids: {', '.join(dupes)}")
        return self


class IncidentRule(_Spec):
    id: str = Field(pattern=RULE_ID_PATTERN)
    categories: tuple[IncidentCategory, ...] = Field(min_length=1)
    services: tuple[ServiceKind, ...] = Field(min_length=1)


class EscalationRule(_Spec):
    id: str = Field(pattern=RULE_ID_PATTERN)
    categories: tuple[IncidentCategory, ...] | None = None  # None: every category
    min_severity: Severity
    services: tuple[ServiceKind, ...] = Field(min_length=1)

    def applies(self, category: IncidentCategory, severity: Severity) -> bool:
        in_scope = self.categories is None or category in self.categories
        return in_scope and severity.rank >= self.min_severity.rank


class AlertRule(_Spec):
    id: str = Field(pattern=RULE_ID_PATTERN)
    cap_categories: tuple[CapCategory, ...] = ()
    event_codes: tuple[IncidentCategory, ...] = ()
    services: tuple[ServiceKind, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _has_match(self) -> AlertRule:
        if not (self.cap_categories or self.event_codes):
            raise ValueError("an alert rule needs `cap_categories` or `event_codes`")
        return self


class PcsRule(_Spec):
    id: str = Field(default="pcs-chain", pattern=RULE_ID_PATTERN)
    service: ServiceKind = ServiceKind.municipal_safeguard


class DeadlineRule(_Spec):
    """How soon each agency dispatched an incident should act on it and resolve it (hours after
    the report); ``veille.sinks.deadlines`` counts what is late."""

    id: str = Field(pattern=RULE_ID_PATTERN)
    categories: tuple[IncidentCategory, ...] | None = None  # None: every category
    min_severity: Severity = Severity.minor
    acknowledge_hours: float = Field(gt=0)
    resolve_hours: float = Field(gt=0)

    @model_validator(mode="after")
    def _order(self) -> DeadlineRule:
        if self.resolve_hours < self.acknowledge_hours:
            raise ValueError("resolve_hours is shorter than acknowledge_hours")
        return self

    def applies(self, category: IncidentCategory, severity: Severity) -> bool:
        in_scope = self.categories is None or category in self.categories
        return in_scope and severity.rank >= self.min_severity.rank


class RoutingRules(_Spec):
    incident_rules: tuple[IncidentRule, ...] = Field(min_length=1)
    escalations: tuple[EscalationRule, ...] = ()
    alert_rules: tuple[AlertRule, ...] = ()
    pcs: PcsRule | None = Field(default_factory=PcsRule)
    # First matching rule wins: list the most urgent first. No match: no deadline.
    response_deadlines: tuple[DeadlineRule, ...] = ()

    def deadline_for(self, category: IncidentCategory, severity: Severity) -> DeadlineRule | None:
        return next((r for r in self.response_deadlines if r.applies(category, severity)), None)

    @model_validator(mode="after")
    def _unique_ids(self) -> RoutingRules:
        ids = [r.id for r in self.incident_rules] + [r.id for r in self.escalations]
        ids += [r.id for r in self.alert_rules]
        if self.pcs is not None:
            ids.append(self.pcs.id)
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate rule ids: {', '.join(dupes)}")
        return self

    def required_services(self) -> frozenset[ServiceKind]:
        """Every service some rule may ask for: each must be covered everywhere."""
        rules: Iterable[IncidentRule | EscalationRule | AlertRule] = (
            *self.incident_rules, *self.escalations, *self.alert_rules)
        needed = {s for r in rules for s in r.services}
        if self.pcs is not None:
            needed.add(self.pcs.service)
        return frozenset(needed)


# --------------------------------------------------------------------------- territory


@dataclass(frozen=True, eq=False)
class Municipality:
    insee: str
    name: str
    population: int
    geometry: BaseGeometry


@dataclass(frozen=True)
class Agency:
    id: str
    name: str
    level: AgencyLevel
    services: frozenset[ServiceKind]
    home_municipality: str | None


@dataclass(frozen=True, eq=False)
class ServiceArea:
    """One ``service_areas`` entry, resolved to a geometry clipped to the territory."""

    index: int  # position in jurisdiction.yaml, for messages
    agency_id: str
    service: ServiceKind
    priority: int
    geometry: BaseGeometry
    municipalities: tuple[str, ...] | None  # the explicit list, when given as one
    whole_territory: bool
    unknown_municipalities: tuple[str, ...] = ()
    geometry_problem: str | None = None

    @property
    def source(self) -> str:
        return f"{JURISDICTION_FILE} service_areas[{self.index}]"

    @property
    def area(self) -> float:
        return float(self.geometry.area)

    def describe(self) -> str:
        if self.whole_territory:
            return "whole territory"
        if self.municipalities is not None:
            return "municipalities " + ", ".join(self.municipalities)
        return "polygon"


@dataclass(frozen=True)
class Issue:
    level: Literal["error", "warning", "info"]
    code: str
    message: str
    service: ServiceKind | None = None
    agencies: tuple[str, ...] = ()
    municipalities: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.level.upper():7s} {self.code}: {self.message}"


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
        side = max(64, min(1024, int(24 * math.sqrt(len(geoms)))))
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


@dataclass(frozen=True, eq=False)
class Territory:
    path: Path
    name: str
    departement: str | None
    municipalities: Mapping[str, Municipality]
    agencies: Mapping[str, Agency]
    service_areas: tuple[ServiceArea, ...]
    rules: RoutingRules
    policies: Mapping[ServiceKind, ServicePolicy]
    geometry: BaseGeometry  # union of the municipalities
    index: MunicipalityIndex = field(repr=False)

    def locate(self, lon: float, lat: float) -> tuple[str, ...]:
        return self.index.locate(lon, lat)

    def usable(self, area: ServiceArea) -> bool:
        """Whether routing may use this area (its agency exists and provides the service)."""
        agency = self.agencies.get(area.agency_id)
        return agency is not None and area.service in agency.services and not area.geometry.is_empty

    def areas_for(self, service: ServiceKind) -> tuple[ServiceArea, ...]:
        return tuple(a for a in self.service_areas if a.service == service and self.usable(a))

    def policy(self, service: ServiceKind) -> ServicePolicy:
        return self.policies.get(service) or ServicePolicy()


# --------------------------------------------------------------------------- loading

_M = TypeVar("_M", bound=BaseModel)


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _parse(model: type[_M], data: Any, file: Path) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [f"{file}: {_format_loc(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise TerritoryError("\n".join(lines)) from None


def _read(file: Path) -> Any:
    if not file.is_file():
        raise TerritoryError(f"{file}: missing")
    try:
        text = file.read_text(encoding="utf-8")
        return json.loads(text) if file.suffix in (".geojson", ".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise TerritoryError(f"{file}: not valid {file.suffix.lstrip('.').upper()}: {exc}") from None


def _valid(geom: BaseGeometry) -> tuple[BaseGeometry, str | None]:
    if geom.is_valid:
        return geom, None
    reason = shapely.is_valid_reason(geom)
    return shapely.make_valid(geom), reason


def read_territory(directory: Path | str) -> Territory:
    """Parse and resolve a territory directory, without the coverage checks."""
    root = Path(directory)
    if not root.is_dir():
        raise TerritoryError(f"{root}: not a directory")
    muni_file, jur_file = root / MUNICIPALITIES_FILE, root / JURISDICTION_FILE
    rules_file = root / ROUTING_FILE
    collection = _parse(MunicipalityCollection, _read(muni_file), muni_file)
    jurisdiction = _parse(JurisdictionSpec, _read(jur_file), jur_file)
    rules = _parse(RoutingRules, _read(rules_file) or {}, rules_file)

    municipalities: dict[str, Municipality] = {}
    for feature in sorted(collection.features, key=lambda f: f.properties.insee):
        geom, problem = _valid(shape(feature.geometry))
        if problem:
            raise TerritoryError(f"{muni_file}: municipality {feature.properties.insee}: "
                                 f"invalid polygon ({problem})")
        p = feature.properties
        municipalities[p.insee] = Municipality(p.insee, p.name, p.population, geom)
    territory_geom = shapely.union_all([m.geometry for m in municipalities.values()])

    agencies = {
        a.id: Agency(a.id, a.name, a.level, frozenset(a.services), a.home_municipality)
        for a in jurisdiction.agencies
    }
    areas: list[ServiceArea] = []
    for i, spec in enumerate(jurisdiction.service_areas):
        listed: tuple[str, ...] | None = None
        unknown: tuple[str, ...] = ()
        problem = None
        if spec.all:
            geom = territory_geom
        elif spec.municipalities is not None:
            listed = tuple(dict.fromkeys(spec.municipalities))
            unknown = tuple(c for c in listed if c not in municipalities)
            known = [municipalities[c].geometry for c in listed if c in municipalities]
            geom = shapely.union_all(known) if known else shapely.Polygon()
        else:
            assert spec.polygon is not None
            raw, problem = _valid(shape(spec.polygon))
            geom = shapely.intersection(raw, territory_geom)
        areas.append(ServiceArea(i, spec.agency, spec.service, spec.priority, geom, listed,
                                 spec.all, unknown, problem))
    return Territory(
        path=root,
        name=jurisdiction.intercommunality,
        departement=jurisdiction.departement,
        municipalities=MappingProxyType(municipalities),
        agencies=MappingProxyType(agencies),
        service_areas=tuple(areas),
        rules=rules,
        policies=MappingProxyType(dict(jurisdiction.policies)),
        geometry=territory_geom,
        index=MunicipalityIndex(list(municipalities.values())),
    )


@lru_cache(maxsize=16)
def _load_cached(path: Path, strict: bool) -> Territory:
    territory = read_territory(path)
    if strict:
        errors = [i for i in validate_territory(territory) if i.level == "error"]
        if errors:
            detail = "\n".join(f"  {e}" for e in errors)
            raise TerritoryError(f"{path}: territory does not pass its checks:\n{detail}", errors)
    return territory


def load_territory(path: Path | str | None = None, *, strict: bool = True) -> Territory:
    """The territory at ``path`` (default: settings.territory_dir), cached by path.

    ``strict`` refuses a territory whose checks report errors (gaps, overlaps, unknown
    references): a router must not start on a jurisdiction it would silently misroute.
    """
    if path is None:
        from veille.config import get_settings

        path = get_settings().territory_dir
    return _load_cached(Path(path).resolve(), strict)


load_territory.cache_clear = _load_cached.cache_clear  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- checks


def _parts(geom: BaseGeometry, territory: Territory) -> list[tuple[str, float]]:
    """Municipalities a geometry meaningfully covers, with the covered share of each."""
    out = []
    for code, m in territory.municipalities.items():
        piece = shapely.intersection(m.geometry, geom).area
        if piece > AREA_TOLERANCE * m.geometry.area:
            out.append((code, piece / m.geometry.area))
    return out


def _reference_issues(t: Territory) -> list[Issue]:
    issues: list[Issue] = []
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
        for service in sorted(agency.services):
            if not any(a.agency_id == agency.id and a.service == service for a in t.service_areas):
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
        for i, a in enumerate(areas):
            for b in areas[i + 1:]:
                if a.agency_id == b.agency_id:
                    continue
                parts = _parts(shapely.intersection(a.geometry, b.geometry), t)
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
    issues = [*_reference_issues(t), *_geometry_issues(t), *_coverage_issues(t), *_rule_issues(t)]
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(issues, key=lambda i: order[i.level])


# --------------------------------------------------------------------------- CLI


def _default_dir(args: argparse.Namespace) -> Path:
    if args.directory:
        return Path(args.directory)
    from veille.config import get_settings

    return get_settings().territory_dir


def _cmd_check(args: argparse.Namespace) -> int:
    directory = _default_dir(args)
    try:
        territory = read_territory(directory)
    except TerritoryError as exc:
        print(exc, file=sys.stderr)
        return 2
    issues = validate_territory(territory)
    shown = issues if args.verbose else [i for i in issues if i.level != "info"]
    for issue in shown:
        print(issue)
    errors = sum(1 for i in issues if i.level == "error")
    warnings = sum(1 for i in issues if i.level == "warning")
    print(f"{directory}: {len(territory.municipalities)} municipalities, {len(territory.agencies)} "
          f"agencies, {len(territory.service_areas)} service areas: {errors} error(s), "
          f"{warnings} warning(s)")
    return 1 if errors else 0


def _cmd_show(args: argparse.Namespace) -> int:
    try:
        t = read_territory(_default_dir(args))
    except TerritoryError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{t.name} ({t.path})")
    print(f"\nMunicipalities ({len(t.municipalities)}):")
    for m in t.municipalities.values():
        print(f"  {m.insee}  {m.name:32s} pop {m.population:>7}")
    print(f"\nAgencies ({len(t.agencies)}):")
    for ag in sorted(t.agencies.values(), key=lambda ag: ag.id):
        home = ag.home_municipality or "-"
        print(f"  {ag.id:24s} {ag.level:13s} home {home:5s}  {', '.join(sorted(ag.services))}")
    print("\nService areas:")
    for service in ServiceKind:
        areas = [a for a in t.service_areas if a.service == service]
        for a in areas:
            prio = f" priority {a.priority}" if a.priority else ""
            print(f"  {service:20s} {a.agency_id:24s} {a.describe()}{prio}")
    r = t.rules
    print(f"\nRules: {len(r.incident_rules)} incident, {len(r.escalations)} escalation, "
          f"{len(r.alert_rules)} alert" + (f", PCS chain -> {r.pcs.service}" if r.pcs else ""))
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("territory", help="check and show the territory and its jurisdiction rules",
                       description="Municipalities, agencies, service areas and routing rules "
                       "(default directory: VEILLE_TERRITORY_DIR).")
    tsub = p.add_subparsers(dest="territory_command", metavar="ACTION", required=True)
    c = tsub.add_parser("check", help="report gaps, overlaps and broken references (exit 1 on errors)")
    c.add_argument("directory", nargs="?", help="territory directory")
    c.add_argument("-v", "--verbose", action="store_true", help="also print informational notes")
    c.set_defaults(func=_cmd_check)
    s = tsub.add_parser("show", help="summary of municipalities, agencies and service areas")
    s.add_argument("directory", nargs="?", help="territory directory")
    s.set_defaults(func=_cmd_show)


__all__ = [
    "Agency", "AgencyLevel", "AlertRule", "DeadlineRule", "EscalationRule", "IncidentRule", "Issue",
    "Municipality", "MunicipalityIndex", "PcsRule", "RoutingRules", "ServiceArea", "ServicePolicy",
    "Territory", "TerritoryError", "add_commands", "load_territory", "read_territory",
    "validate_territory",
]
