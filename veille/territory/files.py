"""Reading a territory directory: the file formats, parsing and resolving, the cached loader.

A territory is a directory of three files:

``municipalities.geojson``
    FeatureCollection, one (Multi)Polygon per municipality, properties ``insee``, ``name``,
    ``population``. The polygons must tile the territory: a point in no polygon is
    *outside* the territory, a point on a shared edge belongs to several (see
    :mod:`veille.territory.routing` for how that tie is broken).
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

import json
from collections import Counter
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeVar

import shapely
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from veille.deliver.config import DeliveryConfigError, parse_delivery
from veille.schemas.models import InseeCode, ServiceKind
from veille.territory.checks import validate_territory
from veille.territory.index import MunicipalityIndex
from veille.territory.model import (
    AGENCY_ID_PATTERN,
    JURISDICTION_FILE,
    MUNICIPALITIES_FILE,
    ROUTING_FILE,
    Agency,
    AgencyLevel,
    Municipality,
    RoutingRules,
    ServiceArea,
    ServicePolicy,
    Spec,
    Territory,
    TerritoryError,
)


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


class AgencySpec(Spec):
    id: str = Field(pattern=AGENCY_ID_PATTERN)
    name: str = Field(min_length=1, max_length=300)
    level: AgencyLevel
    services: tuple[ServiceKind, ...] = Field(min_length=1)
    home_municipality: InseeCode | None = None
    # How its dispatches reach it besides Kafka: parsed by veille.deliver.config.parse_delivery.
    delivery: dict[str, Any] | None = None
    # Who supervises it when a dispatch is overdue (streams/escalation.py): one agency id, or
    # one per service it provides ({stormwater: syndicat-..., default: cellule-veille}).
    escalation_to: str | dict[str, str] | None = None

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


class ServiceAreaSpec(Spec):
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



class JurisdictionSpec(Spec):
    intercommunality: str = Field(min_length=1)
    departement: str | None = None
    agencies: tuple[AgencySpec, ...] = Field(min_length=1)
    service_areas: tuple[ServiceAreaSpec, ...] = ()
    policies: dict[ServiceKind, ServicePolicy] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique(self) -> JurisdictionSpec:
        counts = Counter(agency.id for agency in self.agencies)
        dupes = sorted(i for i, n in counts.items() if n > 1)
        if dupes:
            raise ValueError(f"duplicate agency ids: {', '.join(dupes)}")
        return self



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


_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read(file: Path) -> Any:
    if not file.is_file():
        raise TerritoryError(f"{file}: missing")
    try:
        text = file.read_text(encoding="utf-8")
        if file.suffix in (".geojson", ".json"):
            return json.loads(text)
        # libyaml's parser when PyYAML has it: the pure-Python one took 35 s of a 3,500-town
        # territory's 43 s load (benchmarks/scale.py); both are safe loaders, same documents.
        return yaml.load(text, Loader=_YAML_LOADER)
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

    try:
        agencies = {
            a.id: Agency(a.id, a.name, a.level, frozenset(a.services), a.home_municipality,
                         parse_delivery(a.id, a.delivery), _escalation_to(a.escalation_to))
            for a in jurisdiction.agencies
        }
    except DeliveryConfigError as exc:
        raise TerritoryError(f"{jur_file}: {exc}") from None
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


def _escalation_to(value: str | dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    """``escalation_to`` as (service or "default", agency id) pairs (checked by checks.py)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (("default", value),)
    return tuple(sorted(value.items()))
