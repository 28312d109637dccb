"""Reports routed by the real router with grouping on, grouped by the in-memory replay."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import shapely

from veille.config import Settings
from veille.grouping.cases import Grouper
from veille.grouping.records import Writer
from veille.grouping.replay import Replay
from veille.kafka import Message
from veille.schemas import codec
from veille.schemas.models import Channel, GeoPoint, Incident, IncidentCategory, Severity
from veille.streams.router import Router
from veille.territory import Territory, load_territory
from veille.topics import Topics

TOPICS = Topics("t")
T0 = datetime(2026, 11, 3, 17, 0, tzinfo=UTC)
DISPATCH_KEY = b"d"
_TERRITORY: Territory | None = None


def territory() -> Territory:
    global _TERRITORY
    if _TERRITORY is None:
        _TERRITORY = load_territory(Settings().territory_dir)
    return _TERRITORY


def router(grouping: bool = True) -> Router:
    return Router(territory(), TOPICS, pseudonym_key=b"k", dispatch_key=DISPATCH_KEY,
                  clock=lambda: T0 + timedelta(hours=2), grouping=grouping)


def replay() -> Replay:
    return Replay(Grouper(territory(), Writer(TOPICS, DISPATCH_KEY, lambda _t, r, v: codec.encode(r, v))))


def incident(lat: float | None, lon: float | None, *, minutes: float = 0.0, municipality: str | None = None,
             category: str = "flash_flood", severity: str = "moderate", n: int | None = None,
             channel: str = "app") -> Incident:
    at = T0 + timedelta(minutes=minutes)
    if municipality is None:
        assert lat is not None and lon is not None
        municipality = territory().locate(lon, lat)[0]
    ident = uuid.UUID(int=n) if n is not None else uuid.uuid4()
    return Incident(id=ident, municipality=municipality, category=IncidentCategory(category),
                    severity=Severity(severity), channel=Channel(channel),
                    location=None if lat is None or lon is None else GeoPoint(lat=lat, lon=lon),
                    occurred_at=at, reported_at=at, description="eau")


def route(r: Router, inc: Incident, offset: int = 0) -> list:
    msg = Message(TOPICS.intake(inc.municipality), 0, offset, inc.id.bytes, inc.encode())
    outcome = r.process(msg)
    assert outcome.kind.value == "routed", outcome
    return list(outcome.outputs)


def decoded(outputs: list, topic_prefix: str) -> list[dict]:
    return [codec.decode(o.value).value for o in outputs if o.topic.startswith(topic_prefix)]


def boundary_point(a: str, b: str) -> tuple[float, float]:
    """A point in the middle of the boundary shared by municipalities ``a`` and ``b`` (lat, lon)."""
    t = territory()
    line = shapely.intersection(t.municipalities[a].geometry.boundary, t.municipalities[b].geometry.boundary)
    p = line.interpolate(0.5, normalized=True)
    return p.y, p.x
