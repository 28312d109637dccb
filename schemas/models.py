"""Pydantic models of the Avro contract: validation at every boundary of the hub.

They mirror ``schemas/avro`` (latest version of each record) field by field;
``tests/schemas/test_schemas.py`` proves the agreement, so a schema change that is not
reflected here fails the suite. Avro says what the bytes are; these models also say
what a *sensible* event is (INSEE code format, WGS84 ranges, bounded text, sane times).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal, Self
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from veille.schemas import codec
from veille.schemas.bounds import (
    MAX_AREAS_PER_INFO,
    MAX_INFOS,
    MAX_POLYGON_VERTICES,
    check_alert_geometry,
    too_complex,
)
from veille.schemas.enums import (
    CLIMATE_CATEGORIES,
    CapCategory,
    CapCertainty,
    CapMsgType,
    CapScope,
    CapSeverity,
    CapStatus,
    CapUrgency,
    CaseRole,
    Channel,
    DeliveryMethod,
    DeliveryOutcome,
    EventType,
    IncidentCategory,
    IncidentStatus,
    NotificationChannel,
    RejectionReason,
    ServiceKind,
    Severity,
)

# Nothing can have happened on the hub before it existed; clocks this far off are bugs.
HUB_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(minutes=10)
MAX_DESCRIPTION = 4000
MAX_ATTACHMENTS = 10
INSEE_PATTERN = r"^(?:\d{5}|2[AB]\d{3})$"
InseeCode = Annotated[str, Field(pattern=INSEE_PATTERN, description="INSEE municipality code")]


def _sane_time(value: datetime) -> datetime:
    if value < HUB_EPOCH:
        raise ValueError(f"is before the hub existed ({HUB_EPOCH.date()})")
    if value > datetime.now(UTC) + MAX_CLOCK_SKEW:
        raise ValueError("is in the future")
    return value


def _millis(value: datetime) -> datetime:
    # Avro timestamps are milliseconds: truncate now so a round trip is lossless.
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


Timestamp = Annotated[AwareDatetime, AfterValidator(_millis)]
EventTime = Annotated[AwareDatetime, AfterValidator(_sane_time), AfterValidator(_millis)]


class Record(BaseModel):
    """Base of every event model: strict about unknown fields, encodes to Avro."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    avro_name: ClassVar[str]

    def to_avro(self) -> dict[str, Any]:
        return self.model_dump(mode="python")

    def encode(self) -> bytes:
        # Straight from the attributes: model_dump cost a third of the SDK's encoding.
        return codec.encode_object(self.avro_name, self, self.to_avro)

    @classmethod
    def from_avro(cls, value: dict[str, Any]) -> Self:
        return cls.model_validate(value)

    @classmethod
    def decode(cls, data: bytes | None) -> Self:
        return cls.from_avro(codec.decode(data, expect=(cls.avro_name,)).value)


class GeoPoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)


class ReporterContact(BaseModel):
    """SENSITIVE: never logged, never stored in the shared store (see README, Personal data)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=254)

    def __repr__(self) -> str:  # keeps contacts out of logs and tracebacks
        return "ReporterContact(<redacted>)"

    __str__ = __repr__


class Attachment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    uri: str = Field(min_length=1, max_length=2000)
    media_type: str = Field(pattern=r"^[\w.+-]+/[\w.+-]+$")


MAX_PHOTOS = 5
PHOTO_DIGEST = r"^[0-9a-f]{64}$"


class PhotoRef(BaseModel):
    """A photo in the hub's photo store (veille.photos), by the SHA-256 of its clean bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sha256: str = Field(pattern=PHOTO_DIGEST)
    media_type: str = Field(default="image/jpeg", pattern=r"^image/[\w.+-]+$")


class Incident(Record):
    avro_name: ClassVar[str] = "Incident"
    id: UUID
    municipality: InseeCode
    category: IncidentCategory
    severity: Severity
    location: GeoPoint | None = None
    address: str | None = Field(default=None, max_length=500)
    occurred_at: EventTime
    reported_at: EventTime
    channel: Channel
    reporter: ReporterContact | None = None
    description: str = Field(default="", max_length=MAX_DESCRIPTION)
    attachments: list[Attachment] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)
    photos: list[PhotoRef] = Field(default_factory=list, max_length=MAX_PHOTOS)  # v3

    @model_validator(mode="after")
    def _occurred_before_reported(self) -> Self:
        if self.occurred_at > self.reported_at + MAX_CLOCK_SKEW:
            raise ValueError("occurred_at is after reported_at")
        return self


class KeyValue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    value_name: str
    value: str


class Circle(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    center: GeoPoint
    radius_km: float = Field(gt=0, le=500, allow_inf_nan=False)


class AlertArea(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    area_desc: str = Field(min_length=1, max_length=500)
    polygons: list[list[GeoPoint]] = Field(default_factory=list)
    circles: list[Circle] = Field(default_factory=list)
    geocodes: list[KeyValue] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_shape(self) -> Self:
        if not (self.polygons or self.circles or self.geocodes):
            raise ValueError("an area needs at least one polygon, circle or geocode")
        for ring in self.polygons:
            if len(ring) < 4 or ring[0] != ring[-1]:
                raise ValueError("a polygon is a closed ring of at least 4 points")
            if len(ring) > MAX_POLYGON_VERTICES:
                raise too_complex(f"a polygon has {len(ring)} points (at most {MAX_POLYGON_VERTICES})")
        return self


class AlertInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    language: str = "fr-FR"
    category: list[CapCategory] = Field(min_length=1)
    event: str = Field(min_length=1, max_length=200)
    event_codes: list[KeyValue] = Field(default_factory=list)
    urgency: CapUrgency
    severity: CapSeverity
    certainty: CapCertainty
    effective: Timestamp | None = None
    onset: Timestamp | None = None
    expires: Timestamp | None = None
    headline: str | None = Field(default=None, max_length=300)
    instruction: str | None = Field(default=None, max_length=MAX_DESCRIPTION)
    areas: list[AlertArea] = Field(min_length=1)

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if len(self.areas) > MAX_AREAS_PER_INFO:
            raise too_complex(f"{len(self.areas)} areas in one info (at most {MAX_AREAS_PER_INFO})")
        return self


class Alert(Record):
    """OASIS CAP 1.2 <alert> (field names in snake_case)."""

    avro_name: ClassVar[str] = "Alert"
    identifier: str = Field(min_length=1, max_length=200)
    sender: str = Field(min_length=1, max_length=200)
    sent: EventTime
    status: CapStatus
    msg_type: CapMsgType
    scope: CapScope
    references: list[str] = Field(default_factory=list, max_length=100)
    infos: list[AlertInfo] = Field(min_length=1, max_length=MAX_INFOS)

    @model_validator(mode="after")
    def _geometry_bounded(self) -> Self:
        check_alert_geometry(area for info in self.infos for area in info.areas)
        return self


class StatusUpdate(Record):
    avro_name: ClassVar[str] = "StatusUpdate"
    id: UUID
    incident_id: UUID
    agency_id: str = Field(min_length=1, max_length=100)
    dispatch_id: UUID | None = None  # required by the router since v2 (see streams/router.py)
    status: IncidentStatus
    at: EventTime
    note: str | None = Field(default=None, max_length=MAX_DESCRIPTION)  # never in the shared store
    # v3, with status rejected: why, and where the agency says it really is (streams re-route).
    reason: RejectionReason | None = None
    corrected_location: GeoPoint | None = None


class DeadLetter(Record):
    avro_name: ClassVar[str] = "DeadLetter"
    reason: str
    message: str
    component: str
    source_topic: str
    source_partition: int
    source_offset: int
    original_key: bytes | None = None
    original_value: bytes | None = None  # a bounded prefix since v2 (veille.deadletter)
    original_size: int | None = None
    original_sha256: str | None = None
    attempts: int = 1
    # v3: who published it, and the range a quarantined source's letter stands for
    # (veille.streams.quarantine): range_count messages at range_offsets.
    source: str | None = None
    range_last_offset: int | None = None
    range_count: int = 1
    range_sha256: str | None = None
    range_offsets: list[int] = Field(default_factory=list)
    samples: list[bytes] = Field(default_factory=list)
    failed_at: Timestamp


class DispatchTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    agency_id: str
    service: ServiceKind
    rule: str
    cross_boundary: bool


class CaseRef(BaseModel):
    """The case a dispatch belongs to (Dispatch v2): nearby reports of one category grouped as
    they arrive (docs/grouping.md). The case's id is the incident id of its first report."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: UUID
    role: CaseRole
    update_of: UUID | None = None  # role update: the body's dispatch of the case, to answer
    reports: int = Field(ge=1)
    severity: str
    municipalities: list[str] = Field(default_factory=list)
    positions: list[GeoPoint] = Field(default_factory=list, max_length=20)


class Dispatch(Record):
    avro_name: ClassVar[str] = "Dispatch"
    id: UUID
    event_type: EventType
    event_id: str
    agency_id: str
    service: ServiceKind
    rule: str
    cross_boundary: bool
    municipality: str
    category: str
    severity: str
    reported_at: Timestamp
    routed_at: Timestamp
    payload: bytes
    case: CaseRef | None = None  # v2: grouped into a case (docs/grouping.md)


class RoutedIncident(Record):
    avro_name: ClassVar[str] = "RoutedIncident"
    id: UUID
    municipality: str
    category: IncidentCategory
    severity: Severity
    channel: Channel
    location: GeoPoint | None = None
    occurred_at: Timestamp
    reported_at: Timestamp
    routed_at: Timestamp
    reporter_pseudonym: str | None = None
    dispatches: list[DispatchTarget]
    # v2: the case it was grouped into (its first report's id; None: not grouped) and the
    # bodies that got it as an update of their dispatch of the case instead of a dispatch.
    case_id: UUID | None = None
    updates: list[DispatchTarget] = Field(default_factory=list)


class RoutedAlert(Record):
    avro_name: ClassVar[str] = "RoutedAlert"
    identifier: str
    sender: str
    sent: Timestamp
    status: str
    msg_type: str
    event: str
    category: str
    severity: str
    urgency: str
    headline: str | None = None
    municipalities: list[str]
    scope: str = "Public"  # v2: scope, references, expires, cap_json
    references: list[str] = Field(default_factory=list)
    expires: Timestamp | None = None
    cap_json: str | None = None
    routed_at: Timestamp
    dispatches: list[DispatchTarget]


MAX_RECEIPT_REPLY = 500


class DeliveryReceipt(Record):
    """One attempt to deliver a dispatch (veille.deliver): its outcome, never a secret."""

    avro_name: ClassVar[str] = "DeliveryReceipt"
    dispatch_id: UUID
    agency_id: str = Field(min_length=1, max_length=100)
    method: DeliveryMethod
    attempt: int = Field(ge=1, le=2**31 - 1)
    outcome: DeliveryOutcome
    status_code: int | None = Field(default=None, ge=0, le=999)
    reply: str | None = Field(default=None, max_length=MAX_RECEIPT_REPLY)
    latency_ms: int = Field(ge=0, le=2**63 - 1)
    at: Timestamp


class Redispatch(Record):
    """A dispatch made after routing: a refused one re-routed, or an overdue one escalated
    (streams/escalation.py), on ``<prefix>.routed`` so the store counts it."""

    avro_name: ClassVar[str] = "Redispatch"
    id: UUID
    kind: Literal["rerouted", "escalated"]
    incident_id: UUID
    agency_id: str = Field(min_length=1, max_length=100)
    service: ServiceKind
    rule: str = Field(min_length=1, max_length=200)
    cross_boundary: bool
    hop: int = Field(ge=0, le=1000)
    previous_id: UUID
    previous_agency_id: str = Field(min_length=1, max_length=100)
    reason: str = Field(min_length=1, max_length=100)
    step: str | None = Field(default=None, max_length=100)
    municipality: str
    category: str
    severity: str
    reported_at: Timestamp
    refused_at: Timestamp
    routed_at: Timestamp


class CaseSplit(Record):
    """A body splits a report out of a case (agency desk): for that body the report's update
    becomes a dispatch of its own, answered on ``dispatch_id`` (docs/grouping.md)."""

    avro_name: ClassVar[str] = "CaseSplit"
    id: UUID
    incident_id: UUID
    case_id: UUID
    agency_id: str = Field(min_length=1, max_length=100)
    service: ServiceKind
    dispatch_id: UUID
    at: EventTime


class NotificationConsent(Record):
    """SENSITIVE (the address): only on <prefix>.notify.consent, never logged (see veille.notify)."""

    avro_name: ClassVar[str] = "NotificationConsent"
    incident_id: UUID
    reference: str = Field(min_length=8, max_length=40)
    channel: NotificationChannel
    address: str = Field(min_length=3, max_length=254)
    on_behalf_of_relay: bool = False
    language: str = Field(default="fr", pattern=r"^[a-z]{2}$")
    consented_at: Timestamp

    def __repr__(self) -> str:  # keeps the address out of logs and tracebacks
        return (f"NotificationConsent(incident_id={self.incident_id}, channel={self.channel.value}, "
                "<redacted>)")

    __str__ = __repr__


MODELS: dict[str, type[Record]] = {
    m.avro_name: m
    for m in (Incident, Alert, StatusUpdate, DeadLetter, Dispatch, RoutedIncident, RoutedAlert,
              DeliveryReceipt, Redispatch, NotificationConsent, CaseSplit)
}
# The enums live in schemas/enums.py; imported from here as well.
__all__ = ["MODELS", "Record", *[n for n in MODELS],
           "CLIMATE_CATEGORIES", "CapCategory", "CapCertainty", "CapMsgType", "CapScope",
           "CapSeverity", "CapStatus", "CapUrgency", "CaseRole", "Channel", "DeliveryMethod",
           "DeliveryOutcome", "EventType", "IncidentCategory", "IncidentStatus", "NotificationChannel",
           "RejectionReason",
           "ServiceKind",
           "Severity"]
