"""A dispatch as the people receiving it read it: its event decoded, French labels.

Every method (webhook body, e-mail, Open311 request) is built from one :class:`DispatchView`.
The dispatch's ``payload`` is the original event (an Incident or a CAP Alert); when it cannot
be decoded (a framing this process cannot read), the view has the dispatch's own fields only
and the delivery still goes out: the agency learns that something is for it, and where.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache

from veille.photos.links import PhotoLink, PhotoLinks
from veille.schemas import codec
from veille.schemas.models import Alert, Dispatch, GeoPoint, Incident, ReporterContact, ServiceKind

SERVICE_LABELS: dict[str, str] = {
    ServiceKind.municipal_police: "Police municipale",
    ServiceKind.fire_rescue: "Secours et lutte contre l'incendie",
    ServiceKind.stormwater: "Eaux pluviales",
    ServiceKind.public_works: "Services techniques",
    ServiceKind.social_mediation: "Médiation sociale",
    ServiceKind.health: "Santé",
    ServiceKind.monitoring_cell: "Cellule de veille",
    ServiceKind.municipal_safeguard: "Plan communal de sauvegarde",
}
# CAP severities (alerts); incident severities come from the relay form's catalogue.
CAP_SEVERITY_LABELS = {"Extreme": "Extrême", "Severe": "Sévère", "Moderate": "Modérée",
                       "Minor": "Mineure", "Unknown": "Inconnue"}
CAP_CATEGORY_LABELS = {"Geo": "Géophysique", "Met": "Météorologie", "Safety": "Sécurité",
                       "Security": "Sûreté", "Rescue": "Secours", "Fire": "Incendie", "Health": "Santé",
                       "Env": "Environnement", "Transport": "Transports", "Infra": "Infrastructures",
                       "CBRNE": "NRBC", "Other": "Autre"}


@cache
def _category_labels() -> dict[str, str]:
    from veille.producers.open311_catalog import SERVICES  # French names of the categories

    return {category.value: names[0] for category, names in SERVICES.items()}


@cache
def _severity_labels() -> dict[str, str]:
    from veille.web.i18n import catalogue

    prefix = "relay.severity."
    return {k[len(prefix):]: v for k, v in catalogue().items() if k.startswith(prefix)}


def category_label(category: str) -> str:
    return _category_labels().get(category) or CAP_CATEGORY_LABELS.get(category) or category


def severity_label(severity: str) -> str:
    return _severity_labels().get(severity) or CAP_SEVERITY_LABELS.get(severity) or severity


@dataclass(frozen=True)
class DispatchView:
    dispatch: Dispatch
    category_label: str
    severity_label: str
    service_label: str
    description: str | None = None
    location: GeoPoint | None = None
    address: str | None = None
    occurred_at: datetime | None = None
    headline: str | None = None  # alerts: the first info's headline, else its event
    area: str | None = None  # alerts: the areas' descriptions
    reporter: ReporterContact | None = None  # SENSITIVE: only where the body's config allows
    decoded: bool = False
    photos: tuple[str, ...] = ()  # the incident's photos (digests in the photo store, Incident v3)
    photo_links: tuple[PhotoLink, ...] = ()  # their signed URLs for this dispatch (the deliverer's)
    channel: str | None = None  # incidents: how the report reached the hub (a case lists it)

    @property
    def short_id(self) -> str:
        """The reference people read out on the phone (the id's first 8 hex digits)."""
        head = self.dispatch.id.hex[:8].upper()
        return f"{head[:4]}-{head[4:]}"


def view(dispatch: Dispatch) -> DispatchView:
    labels = {"category_label": category_label(dispatch.category),
              "severity_label": severity_label(dispatch.severity),
              "service_label": SERVICE_LABELS.get(dispatch.service, dispatch.service.value)}
    try:
        decoded = codec.decode(dispatch.payload, expect=("Incident", "Alert"))
        if decoded.record_type == "Incident":
            incident = Incident.from_avro(decoded.value)
            return DispatchView(dispatch, **labels, description=incident.description or None,
                                location=incident.location, address=incident.address,
                                occurred_at=incident.occurred_at, reporter=incident.reporter, decoded=True,
                                photos=tuple(p.sha256 for p in incident.photos),
                                channel=incident.channel.value)
        alert = Alert.from_avro(decoded.value)
    except ValueError:  # DecodeError and pydantic's ValidationError
        return DispatchView(dispatch, **labels)
    info = alert.infos[0]
    areas = "; ".join(dict.fromkeys(a.area_desc for i in alert.infos for a in i.areas))
    return DispatchView(dispatch, **labels, description=info.instruction,
                        headline=info.headline or info.event,
                        occurred_at=info.onset or info.effective or alert.sent, area=areas or None,
                        decoded=True)


def with_photos(v: DispatchView, links: PhotoLinks, base_url: str) -> DispatchView:
    """``v`` with the signed URLs of its incident's photos for this dispatch (none without a
    base URL: the intake that serves them is not reachable from outside)."""
    if not v.photos or not base_url:
        return v
    return replace(v, photo_links=links.for_dispatch(base_url, v.photos, v.dispatch.id, v.dispatch.routed_at))
