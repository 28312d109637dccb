"""A deterministic, realistic stream of hub events for demos, tests and benchmarks (pure: no I/O).

``Simulator(territory, seed, start)`` keeps a simulated clock starting at ``start``. Each
new incident moves it forward by an exponential inter-arrival time; the lifecycle of an
incident (acknowledged, dispatched, on site, resolved, by the agencies the router picks)
is queued and released once the clock passes it, so :meth:`Simulator.events` yields
records in time order. The same seed and start give the same stream.

The models reject times before 2024 or in the future, so pick ``start`` so that the clock
stays in the past (e.g. ``now - n * mean_interval``), or pace the emission on the wall clock.

:meth:`Simulator.flash_flood` emits one CAP alert over the river valley (the polygon
stormwater service areas, where a syndicate exists) followed by a burst of severe flood
incidents inside the flooded area, spread over every municipality the valley crosses.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar
from uuid import UUID

import shapely
from shapely.geometry.base import BaseGeometry

from veille.config import get_settings
from veille.schemas.models import (
    HUB_EPOCH,
    Alert,
    AlertArea,
    AlertInfo,
    Attachment,
    CapCategory,
    CapCertainty,
    CapMsgType,
    CapScope,
    CapSeverity,
    CapStatus,
    CapUrgency,
    Channel,
    DispatchTarget,
    EventType,
    GeoPoint,
    Incident,
    IncidentCategory,
    IncidentStatus,
    KeyValue,
    ReporterContact,
    ServiceKind,
    Severity,
    StatusUpdate,
)
from veille.territory import Territory
from veille.territory.dispatch import dispatch_id
from veille.territory.routing import route_incident

C = IncidentCategory
_T = TypeVar("_T")

# Relative frequencies, after the mix of citizen-report platforms (public space first) plus
# police calls; climate events are rare outside a crisis (see flash_flood for one).
CATEGORY_WEIGHTS: dict[IncidentCategory, float] = {
    C.illegal_dumping: 12, C.damaged_road: 10, C.broken_streetlight: 9, C.noise_nuisance: 8,
    C.vandalism: 6, C.graffiti: 6, C.neighbour_noise: 6, C.theft: 5, C.abandoned_vehicle: 5,
    C.blocked_drain: 4, C.neighbour_dispute: 4, C.damaged_street_furniture: 4, C.other: 4,
    C.burglary: 3, C.fallen_tree: 3, C.urban_rodeo: 2, C.public_disorder: 2, C.damaged_playground: 2,
    C.assault: 1.5, C.drug_trafficking: 1, C.flood: 1, C.storm: 0.8, C.heatwave: 0.6, C.drought: 0.3,
    C.wildfire: 0.2, C.flash_flood: 0.15, C.landslide: 0.15,
}
CHANNEL_WEIGHTS: dict[Channel, float] = {
    Channel.app: 30, Channel.phone: 22, Channel.web: 14, Channel.agency: 10, Channel.sensor: 9,
    Channel.town_hall_desk: 9, Channel.neighbourhood_representative: 6,
}
# Only these are measured by sensors (water levels, lamp controllers, sound meters, weather).
SENSOR_CATEGORIES = frozenset({C.flood, C.flash_flood, C.blocked_drain, C.broken_streetlight,
                               C.noise_nuisance, C.heatwave, C.drought, C.storm, C.wildfire})
# Phone and desk reports often give only a town and an address.
LOCATION_PROBABILITY: dict[Channel, float] = {
    Channel.app: 1.0, Channel.sensor: 1.0, Channel.web: 0.85, Channel.agency: 0.8,
    Channel.neighbourhood_representative: 0.5, Channel.phone: 0.35, Channel.town_hall_desk: 0.15,
}
CONTACT_PROBABILITY: dict[Channel, float] = {
    Channel.app: 0.7, Channel.web: 0.8, Channel.phone: 0.6, Channel.town_hall_desk: 0.9,
    Channel.neighbourhood_representative: 1.0, Channel.sensor: 0.0, Channel.agency: 0.0,
}
SEVERITY_WEIGHTS = {
    "public_space": (55, 35, 8, 2),
    "security": (30, 42, 21, 7),
    "climate": (15, 35, 35, 15),
}
# Reports filed with one town's app about a spot just across the border (routed by the point).
ACROSS_BORDER_SHARE = 0.02
STATUS_OPEN_SHARE = 0.1  # incidents still unresolved when the stream ends (real backlogs)
REJECT_SHARE = 0.04  # duplicates and hoaxes

STREETS = (
    "rue de la Mairie", "rue des Lavandières", "place de l'Église", "route de Rennes",
    "chemin du Moulin", "allée des Tilleuls", "rue du Stade", "impasse des Peupliers",
    "boulevard de la Veille", "rue du Bourg", "rue de la Gare", "chemin des Prés",
    "rue Jean Jaurès", "avenue de Bretagne", "rue des Écoles", "quai de la Veille",
)
FIRST_NAMES = ("Marie", "Yann", "Nathalie", "Gwenaël", "Sophie", "Pierre", "Nolwenn", "Karim",
               "Isabelle", "Loïc", "Fatima", "Erwan", "Claire", "Mathieu", "Aïcha", "Hervé")
LAST_NAMES = ("Le Gall", "Martin", "Le Roux", "Bernard", "Guillou", "Moreau", "Le Bihan", "Petit",
              "Morvan", "Benali", "Rolland", "Jégou", "Nguyen", "Lebreton", "Hamon", "Carré")
DESCRIPTIONS: dict[IncidentCategory, tuple[str, ...]] = {
    C.burglary: ("Cambriolage constaté au retour de vacances", "Porte fracturée, maison visitée"),
    C.theft: ("Vol de vélo devant la médiathèque", "Vol à l'arraché près du marché"),
    C.assault: ("Agression signalée à l'arrêt de bus", "Rixe devant le bar"),
    C.vandalism: ("Abribus vandalisé, vitres brisées", "Véhicules rayés sur le parking"),
    C.drug_trafficking: ("Allées et venues suspectes en bas de l'immeuble",),
    C.noise_nuisance: ("Musique forte tard le soir", "Tapage nocturne récurrent"),
    C.illegal_dumping: ("Dépôt sauvage de gravats en lisière de bois",
                        "Encombrants abandonnés sur le trottoir"),
    C.graffiti: ("Tags sur le mur de l'école", "Graffitis sur la façade de la salle des fêtes"),
    C.urban_rodeo: ("Rodéo de motos cross sur le parking du stade",),
    C.public_disorder: ("Attroupement bruyant et bouteilles cassées",),
    C.broken_streetlight: ("Lampadaire éteint depuis plusieurs jours", "Éclairage public clignotant"),
    C.damaged_road: ("Nid-de-poule dangereux", "Chaussée affaissée après les pluies"),
    C.damaged_street_furniture: ("Banc arraché", "Barrière de sécurité tordue"),
    C.blocked_drain: ("Avaloir bouché, eau stagnante", "Grille d'égout obstruée par les feuilles"),
    C.damaged_playground: ("Toboggan cassé à l'aire de jeux",),
    C.abandoned_vehicle: ("Véhicule ventouse sans plaques depuis un mois",),
    C.fallen_tree: ("Arbre tombé en travers du chemin", "Grosse branche sur la chaussée"),
    C.neighbour_dispute: ("Conflit de voisinage au sujet d'une haie", "Différend sur un droit de passage"),
    C.neighbour_noise: ("Aboiements incessants chez le voisin", "Travaux bruyants le dimanche"),
    C.heatwave: ("Personne âgée isolée, logement très chaud", "Malaise lié à la chaleur"),
    C.flood: ("Cave inondée", "Route submergée sur 50 m"),
    C.flash_flood: ("Montée brutale des eaux, rue transformée en torrent",),
    C.wildfire: ("Départ de feu dans la lande", "Fumée au-dessus du bois"),
    C.storm: ("Toiture endommagée par le vent", "Câbles arrachés par la tempête"),
    C.landslide: ("Glissement de talus sur la route communale",),
    C.drought: ("Ruisseau à sec, poissons morts", "Puits tari"),
    C.other: ("Signalement divers", "Animal errant"),
}


def _severity_kind(category: IncidentCategory) -> str:
    if category in (C.heatwave, C.flood, C.flash_flood, C.wildfire, C.storm, C.landslide, C.drought):
        return "climate"
    if category in (C.burglary, C.theft, C.assault, C.drug_trafficking, C.urban_rodeo, C.public_disorder):
        return "security"
    return "public_space"


@dataclass(order=True, frozen=True)
class _Pending:
    at: datetime
    seq: int
    incident_id: UUID
    agency_id: str
    status: IncidentStatus
    note: str | None
    dispatch_id: UUID


class Simulator:
    def __init__(self, territory: Territory, seed: int, start: datetime, *,
                 mean_interval: timedelta = timedelta(seconds=30), dispatch_key: bytes | None = None) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.territory = territory
        # The simulator plays the agencies: a real one reads the dispatch id from its dispatch
        # topic, the simulator derives it with the deployment's key (VEILLE_DISPATCH_KEY).
        self.dispatch_key = (dispatch_key if dispatch_key is not None
                             else get_settings().dispatch_key.get_secret_value().encode())
        self.rng = random.Random(seed)
        self.clock = start
        self.mean_interval = mean_interval
        self._seq = 0
        self._pending: list[_Pending] = []
        self._codes = sorted(territory.municipalities)
        self._population = [max(territory.municipalities[c].population, 1) for c in self._codes]
        for m in territory.municipalities.values():
            shapely.prepare(m.geometry)
        munis = territory.municipalities
        self._neighbours = {c: [o for o in self._codes if o != c and shapely.intersects(
            munis[c].geometry, munis[o].geometry)] for c in self._codes}
        self._categories = list(CATEGORY_WEIGHTS)
        self._category_weights = list(CATEGORY_WEIGHTS.values())

    # ------------------------------------------------------------------ primitives

    def _uuid(self) -> UUID:
        return UUID(int=self.rng.getrandbits(128), version=4)

    def _weighted(self, weights: dict[_T, float]) -> _T:
        return self.rng.choices(list(weights), weights=list(weights.values()))[0]

    def _point_in(self, geom: BaseGeometry) -> GeoPoint:
        minx, miny, maxx, maxy = geom.bounds
        shapely.prepare(geom)
        for _ in range(10_000):
            lon, lat = self.rng.uniform(minx, maxx), self.rng.uniform(miny, maxy)
            if shapely.contains_xy(geom, lon, lat):
                return GeoPoint(lat=round(lat, 6), lon=round(lon, 6))
        raise ValueError("could not draw a point inside the area (degenerate geometry?)")

    def _contact(self) -> ReporterContact:
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        digits = " ".join(f"{self.rng.randrange(100):02d}" for _ in range(4))
        email = f"{first}.{last}".lower().replace(" ", "").replace("ï", "i").replace("ë", "e")
        return ReporterContact(
            name=f"{first} {last}",
            phone=f"0{self.rng.choice('67')} {digits}" if self.rng.random() < 0.8 else None,
            email=f"{email}@example.org" if self.rng.random() < 0.6 else None,
        )

    def _address(self) -> str:
        return f"{self.rng.randint(1, 120)} {self.rng.choice(STREETS)}"

    # ------------------------------------------------------------------ incidents

    def incident(self, *, at: datetime | None = None, municipality: str | None = None,
                 category: IncidentCategory | None = None, severity: Severity | None = None,
                 channel: Channel | None = None, location: GeoPoint | None = None,
                 lifecycle: bool = True) -> Incident:
        """One incident reported at ``at`` (default: the clock); unspecified fields are drawn."""
        rng = self.rng
        reported = at or self.clock
        code = municipality or rng.choices(self._codes, weights=self._population)[0]
        cat = category or rng.choices(self._categories, weights=self._category_weights)[0]
        if channel is None:
            channels = {c: w for c, w in CHANNEL_WEIGHTS.items()
                        if c != Channel.sensor or cat in SENSOR_CATEGORIES}
            channel = self._weighted(channels)
        if severity is None:
            weights = SEVERITY_WEIGHTS[_severity_kind(cat)]
            severity = rng.choices(list(Severity), weights=weights)[0]
        if location is None and rng.random() < LOCATION_PROBABILITY[channel]:
            where = code
            if channel in (Channel.app, Channel.web) and self._neighbours[code] \
                    and rng.random() < ACROSS_BORDER_SHARE:
                where = rng.choice(self._neighbours[code])
            location = self._point_in(self.territory.municipalities[where].geometry)
        address = self._address() if location is None or rng.random() < 0.5 else None
        reporter = self._contact() if rng.random() < CONTACT_PROBABILITY[channel] else None
        if channel == Channel.sensor:
            delay = timedelta(seconds=rng.uniform(0, 60))
            description = f"Capteur {rng.randrange(1000, 9999)}: seuil dépassé ({cat.value})"
        else:
            hours = 24.0 if channel in (Channel.town_hall_desk, Channel.neighbourhood_representative) else 3.0
            delay = timedelta(hours=min(rng.expovariate(3.0 / hours), hours))
            description = rng.choice(DESCRIPTIONS[cat])
        attachments = []
        if channel == Channel.app and rng.random() < 0.3:
            attachments.append(Attachment(uri=f"https://media.val-de-veille.example/photos/{self._uuid()}.jpg",
                                          media_type="image/jpeg"))
        incident = Incident(
            id=self._uuid(), municipality=code, category=cat, severity=severity, location=location,
            address=address, occurred_at=max(reported - delay, HUB_EPOCH), reported_at=reported,
            channel=channel, reporter=reporter, description=description, attachments=attachments,
        )
        if lifecycle:
            self._queue_lifecycle(incident)
        return incident

    def _queue_lifecycle(self, incident: Incident) -> None:
        decision = route_incident(incident, self.territory)
        if not decision.routable:
            return
        rng = self.rng
        # Urgent cases are handled in minutes, the rest in hours to days.
        scale = {Severity.critical: 0.1, Severity.severe: 0.3, Severity.moderate: 1.0, Severity.minor: 2.0}
        k = scale[incident.severity]
        at = incident.reported_at
        primary, *others = decision.targets

        def push(target: DispatchTarget, status: IncidentStatus, minutes: float,
                 note: str | None = None) -> None:
            nonlocal at
            at = at + timedelta(minutes=max(minutes, 0.1))
            self._seq += 1
            ref = dispatch_id(self.dispatch_key, EventType.incident, str(incident.id), target.agency_id,
                              target.service)
            heapq.heappush(self._pending, _Pending(at, self._seq, incident.id, target.agency_id, status,
                                                   note, ref))

        start = at
        push(primary, IncidentStatus.acknowledged, rng.uniform(1, 30) * k)
        if rng.random() < REJECT_SHARE:
            push(primary, IncidentStatus.rejected, rng.uniform(1, 20),
                 "Doublon d'un signalement existant")
            return
        push(primary, IncidentStatus.dispatched, rng.uniform(2, 60) * k, "Équipe engagée")
        push(primary, IncidentStatus.on_site, rng.uniform(10, 90) * k)
        if rng.random() >= STATUS_OPEN_SHARE:
            push(primary, IncidentStatus.resolved, rng.expovariate(1 / (600 * k)) + 5,
                 "Intervention terminée")
        for target in others:
            at = start
            push(target, IncidentStatus.acknowledged, rng.uniform(1, 45) * k)

    def _due(self, until: datetime | None) -> Iterator[StatusUpdate]:
        while self._pending and (until is None or self._pending[0].at <= until):
            p = heapq.heappop(self._pending)
            self.clock = max(self.clock, p.at)
            yield StatusUpdate(id=self._uuid(), incident_id=p.incident_id, agency_id=p.agency_id,
                               dispatch_id=p.dispatch_id, status=p.status, at=p.at, note=p.note)

    def _tick(self) -> None:
        seconds = self.rng.expovariate(1.0 / self.mean_interval.total_seconds())
        self.clock += timedelta(seconds=seconds)

    def events(self, n: int) -> Iterator[Incident | StatusUpdate]:
        """``n`` records in time order: new incidents and the due lifecycle updates."""
        emitted = 0
        while emitted < n:
            self._tick()
            for update in self._due(self.clock):
                yield update
                emitted += 1
                if emitted >= n:
                    return
            yield self.incident()
            emitted += 1

    def incidents(self, n: int) -> list[Incident]:
        """``n`` incidents only (their lifecycles stay queued for :meth:`events`)."""
        out = []
        for _ in range(n):
            self._tick()
            out.append(self.incident())
        return out

    def drain(self) -> Iterator[StatusUpdate]:
        """Every queued lifecycle update, in time order (moves the clock to the last one).

        Resolutions come up to days after the report: drain only a stream started long enough ago.
        """
        yield from self._due(None)

    @property
    def pending(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ flash flood

    def flood_area(self) -> BaseGeometry:
        """The flood-prone valley: polygon stormwater areas, else a band across the territory."""
        t = self.territory
        valley = [a.geometry for a in t.service_areas
                  if a.service == ServiceKind.stormwater and a.municipalities is None
                  and not a.whole_territory and not a.geometry.is_empty]
        if valley:
            area = shapely.union_all(valley)
        else:
            minx, miny, maxx, maxy = t.geometry.bounds
            mid, half = (miny + maxy) / 2, (maxy - miny) / 12
            area = shapely.box(minx, mid - half, maxx, mid + half).intersection(t.geometry)
        if area.geom_type == "MultiPolygon":
            area = max(area.geoms, key=lambda g: g.area)
        return shapely.Polygon(area.exterior)

    def flash_flood(self, incidents: int = 30, duration: timedelta = timedelta(minutes=90),
                    area: BaseGeometry | None = None) -> list[Alert | Incident | StatusUpdate]:
        """A CAP flash-flood alert over ``area`` (default :meth:`flood_area`), then the burst.

        In time order, like :meth:`events`: the lifecycle updates falling due during the
        burst (of earlier incidents and of the burst's own) come interleaved with it.
        """
        rng = self.rng
        self._tick()
        sent = self.clock
        flooded = area if area is not None else self.flood_area()
        ring = [GeoPoint(lat=round(y, 6), lon=round(x, 6)) for x, y in flooded.exterior.coords]
        ring[-1] = ring[0]
        alert = Alert(
            identifier=f"veille-sim-{self._uuid()}", sender="vigilance@prefecture-35.example",
            sent=sent, status=CapStatus.Actual, msg_type=CapMsgType.Alert, scope=CapScope.Public,
            infos=[AlertInfo(
                category=[CapCategory.Met, CapCategory.Geo], event="Crue soudaine de la Veille",
                event_codes=[KeyValue(value_name="veille", value=IncidentCategory.flash_flood.value)],
                urgency=CapUrgency.Immediate, severity=CapSeverity.Severe, certainty=CapCertainty.Likely,
                effective=sent, onset=sent, expires=sent + timedelta(hours=12),
                headline="Vigilance crue: montée rapide des eaux dans la vallée de la Veille",
                instruction="Ne vous engagez pas sur les routes inondées. Rejoignez les étages.",
                areas=[AlertArea(area_desc="Vallée de la Veille", polygons=[ring])],
            )],
        )
        pieces = []
        for code in self._codes:
            piece = shapely.intersection(flooded, self.territory.municipalities[code].geometry)
            if piece.area > 0:
                pieces.append((code, piece))
        # Every flooded town gets at least one report, the rest follow the flooded surface.
        places = [code for code, _ in pieces][:incidents]
        weights = [p.area for _, p in pieces]
        places += rng.choices([c for c, _ in pieces], weights=weights, k=incidents - len(places))
        offsets = sorted(rng.uniform(0, duration.total_seconds()) for _ in places)
        rng.shuffle(places)
        geoms = dict(pieces)
        out: list[Alert | Incident | StatusUpdate] = [*self._due(sent), alert]
        for code, offset in zip(places, offsets, strict=True):
            point = self._point_in(geoms[code])
            found = self.territory.locate(point.lon, point.lat)
            channel = self._weighted({Channel.sensor: 3, Channel.phone: 4, Channel.app: 3, Channel.agency: 2})
            at = sent + timedelta(seconds=offset)
            out += self._due(at)
            out.append(self.incident(
                at=at, municipality=found[0] if found else code,
                category=rng.choice((C.flood, C.flash_flood, C.flash_flood)),
                severity=rng.choice((Severity.severe, Severity.severe, Severity.critical)),
                channel=channel, location=point))
        self.clock = max(self.clock, sent + timedelta(seconds=offsets[-1] if offsets else 0))
        return out


def span_for(n: int, mean_interval: timedelta = timedelta(seconds=30)) -> timedelta:
    """Generous time span covered by ``n`` incidents: start that far back to stay in the past."""
    return mean_interval * (n + 6 * math.sqrt(n) + 10)


__all__ = ["CATEGORY_WEIGHTS", "CHANNEL_WEIGHTS", "Simulator", "span_for"]
