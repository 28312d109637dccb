"""The contract's enumerations: the symbols of the Avro enums, as Python ``StrEnum``s.

They mirror ``schemas/avro`` like the records of ``schemas/models.py`` (which re-exports them:
``from veille.schemas.models import IncidentCategory`` keeps working); each Avro enum carries a
default so that a reader maps a symbol it does not know yet to ``other``.
"""

from __future__ import annotations

from enum import StrEnum


class IncidentCategory(StrEnum):
    burglary = "burglary"
    theft = "theft"
    assault = "assault"
    vandalism = "vandalism"
    drug_trafficking = "drug_trafficking"
    noise_nuisance = "noise_nuisance"
    illegal_dumping = "illegal_dumping"
    graffiti = "graffiti"
    urban_rodeo = "urban_rodeo"
    public_disorder = "public_disorder"
    broken_streetlight = "broken_streetlight"
    damaged_road = "damaged_road"
    damaged_street_furniture = "damaged_street_furniture"
    blocked_drain = "blocked_drain"
    damaged_playground = "damaged_playground"
    abandoned_vehicle = "abandoned_vehicle"
    fallen_tree = "fallen_tree"
    neighbour_dispute = "neighbour_dispute"
    neighbour_noise = "neighbour_noise"
    heatwave = "heatwave"
    flood = "flood"
    flash_flood = "flash_flood"
    wildfire = "wildfire"
    storm = "storm"
    landslide = "landslide"
    drought = "drought"
    other = "other"


CLIMATE_CATEGORIES = frozenset(
    {IncidentCategory.heatwave, IncidentCategory.flood, IncidentCategory.flash_flood,
     IncidentCategory.wildfire, IncidentCategory.storm, IncidentCategory.landslide,
     IncidentCategory.drought}
)


class Severity(StrEnum):
    minor = "minor"
    moderate = "moderate"
    severe = "severe"
    critical = "critical"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class Channel(StrEnum):
    app = "app"
    web = "web"
    phone = "phone"
    town_hall_desk = "town_hall_desk"
    neighbourhood_representative = "neighbourhood_representative"
    sensor = "sensor"
    agency = "agency"


class ServiceKind(StrEnum):
    municipal_police = "municipal_police"
    fire_rescue = "fire_rescue"
    stormwater = "stormwater"
    public_works = "public_works"
    social_mediation = "social_mediation"
    health = "health"
    monitoring_cell = "monitoring_cell"
    municipal_safeguard = "municipal_safeguard"


class CaseRole(StrEnum):
    """A grouped incident's dispatch (Dispatch v2 ``case.role``, docs/grouping.md)."""

    opened = "opened"  # the case's dispatch to this body: the one it answers
    update = "update"  # a later report of the case, folded into the body's dispatch


class IncidentStatus(StrEnum):
    received = "received"
    acknowledged = "acknowledged"
    dispatched = "dispatched"
    on_site = "on_site"
    resolved = "resolved"
    rejected = "rejected"
    reopened = "reopened"


class RejectionReason(StrEnum):
    """Why an agency refuses a dispatch (StatusUpdate v3); the first two make the router re-route."""

    not_competent = "not_competent"
    wrong_location = "wrong_location"
    duplicate = "duplicate"
    no_action_needed = "no_action_needed"
    other = "other"


class DeliveryMethod(StrEnum):
    kafka = "kafka"
    webhook = "webhook"
    email = "email"
    open311 = "open311"


class NotificationChannel(StrEnum):
    email = "email"
    sms = "sms"


class DeliveryOutcome(StrEnum):
    delivered = "delivered"
    retry = "retry"
    failed = "failed"
    disabled = "disabled"
    undelivered = "undelivered"


class EventType(StrEnum):
    incident = "incident"
    alert = "alert"


class CapStatus(StrEnum):
    Actual = "Actual"
    Exercise = "Exercise"
    System = "System"
    Test = "Test"
    Draft = "Draft"


class CapMsgType(StrEnum):
    Alert = "Alert"
    Update = "Update"
    Cancel = "Cancel"
    Ack = "Ack"
    Error = "Error"


class CapScope(StrEnum):
    Public = "Public"
    Restricted = "Restricted"
    Private = "Private"


class CapCategory(StrEnum):
    Geo = "Geo"
    Met = "Met"
    Safety = "Safety"
    Security = "Security"
    Rescue = "Rescue"
    Fire = "Fire"
    Health = "Health"
    Env = "Env"
    Transport = "Transport"
    Infra = "Infra"
    CBRNE = "CBRNE"
    Other = "Other"


class CapUrgency(StrEnum):
    Immediate = "Immediate"
    Expected = "Expected"
    Future = "Future"
    Past = "Past"
    Unknown = "Unknown"


class CapSeverity(StrEnum):
    Extreme = "Extreme"
    Severe = "Severe"
    Moderate = "Moderate"
    Minor = "Minor"
    Unknown = "Unknown"


class CapCertainty(StrEnum):
    Observed = "Observed"
    Likely = "Likely"
    Possible = "Possible"
    Unlikely = "Unlikely"
    Unknown = "Unknown"
