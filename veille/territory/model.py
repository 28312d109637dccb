"""The territory's domain model: municipalities, agencies, service areas and the routing rules.

The bottom of the package: :mod:`.files` builds a :class:`Territory` from its directory,
:mod:`.checks` reports its problems, routing reads it. The rules and policies are pydantic
models because they are parsed as they are written in the files; everything else is resolved
(geometries clipped to the territory) and frozen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from shapely.geometry.base import BaseGeometry

from veille.deliver.config import DeliveryConfig
from veille.schemas.models import (
    CapCategory,
    IncidentCategory,
    ServiceKind,
    Severity,
)
from veille.territory.index import MunicipalityIndex

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




class Spec(BaseModel):
    """A section of a territory file: unknown keys are refused, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ServicePolicy(Spec):
    gaps: Literal["error", "allow"] = "error"
    overlaps: Literal["error", "allow"] = "error"



class IncidentRule(Spec):
    id: str = Field(pattern=RULE_ID_PATTERN)
    categories: tuple[IncidentCategory, ...] = Field(min_length=1)
    services: tuple[ServiceKind, ...] = Field(min_length=1)


class EscalationRule(Spec):
    id: str = Field(pattern=RULE_ID_PATTERN)
    categories: tuple[IncidentCategory, ...] | None = None  # None: every category
    min_severity: Severity
    services: tuple[ServiceKind, ...] = Field(min_length=1)

    def applies(self, category: IncidentCategory, severity: Severity) -> bool:
        in_scope = self.categories is None or category in self.categories
        return in_scope and severity.rank >= self.min_severity.rank


class AlertRule(Spec):
    id: str = Field(pattern=RULE_ID_PATTERN)
    cap_categories: tuple[CapCategory, ...] = ()
    event_codes: tuple[IncidentCategory, ...] = ()
    services: tuple[ServiceKind, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _has_match(self) -> AlertRule:
        if not (self.cap_categories or self.event_codes):
            raise ValueError("an alert rule needs `cap_categories` or `event_codes`")
        return self


class PcsRule(Spec):
    id: str = Field(default="pcs-chain", pattern=RULE_ID_PATTERN)
    service: ServiceKind = ServiceKind.municipal_safeguard


class DeadlineRule(Spec):
    """How soon each agency dispatched an incident should act on it and resolve it (hours after
    the report); ``veille.reads.deadlines`` counts what is late."""

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


# Never grouped into cases, whatever routing.yaml says (docs/grouping.md): each report of these is
# a person's own matter, and folding it into a neighbour's would hide it or link two residents.
SENSITIVE_CATEGORIES = frozenset({
    IncidentCategory.assault, IncidentCategory.burglary, IncidentCategory.theft,
    IncidentCategory.drug_trafficking, IncidentCategory.neighbour_dispute, IncidentCategory.neighbour_noise,
})


class GroupingRule(Spec):
    """Reports of these categories within ``radius_m`` of a case's first report and within
    ``window_minutes`` of it join that case (docs/grouping.md). Bounds are checked by
    ``veille territory check`` (checks.py), not here, so a bad file is reported, not unreadable."""

    id: str = Field(pattern=RULE_ID_PATTERN)
    categories: tuple[IncidentCategory, ...] = Field(min_length=1)
    radius_m: float
    window_minutes: float
    severe_at: int | None = None  # a case of that many reports is at least severe


class Grouping(Spec):
    cell_resolution: int = Field(default=7, ge=0, le=15)  # H3 resolution of the repartition key
    rules: tuple[GroupingRule, ...] = ()

    def rule_for(self, category: IncidentCategory) -> GroupingRule | None:
        """The rule grouping ``category``; None for a sensitive category, whatever the file says."""
        if category in SENSITIVE_CATEGORIES:
            return None
        return next((r for r in self.rules if category in r.categories), None)

    @property
    def longest_window_minutes(self) -> float:
        return max((r.window_minutes for r in self.rules), default=0.0)

    @property
    def largest_radius_m(self) -> float:
        return max((r.radius_m for r in self.rules), default=0.0)


class RoutingRules(Spec):
    incident_rules: tuple[IncidentRule, ...] = Field(min_length=1)
    escalations: tuple[EscalationRule, ...] = ()
    alert_rules: tuple[AlertRule, ...] = ()
    pcs: PcsRule | None = Field(default_factory=PcsRule)
    # First matching rule wins: list the most urgent first. No match: no deadline.
    response_deadlines: tuple[DeadlineRule, ...] = ()
    # Nearby reports grouped into cases (docs/grouping.md); absent: nothing is grouped.
    grouping: Grouping = Field(default_factory=Grouping)

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
    # How its dispatches reach it besides its Kafka topic (veille/deliver: webhook, e-mail, Open311).
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    # Supervisors for overdue dispatches: (service value or "default", agency id) pairs.
    escalation_to: tuple[tuple[str, str], ...] = ()

    def supervisor(self, service: ServiceKind) -> str | None:
        """Who an overdue dispatch of ``service`` escalates to (the service's entry, else default)."""
        found = dict(self.escalation_to)
        return found.get(service.value) or found.get("default")


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

