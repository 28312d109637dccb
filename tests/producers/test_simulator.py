"""The event simulator: deterministic, valid, realistic (pure: no broker)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
import shapely

from veille.config import Settings
from veille.producers.simulator import Simulator, span_for
from veille.schemas.models import (
    Alert,
    Channel,
    Incident,
    IncidentCategory,
    IncidentStatus,
    Record,
    Severity,
    StatusUpdate,
)
from veille.territory import Territory, load_territory
from veille.territory.routing import route_alert, route_incident

START = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def territory() -> Territory:
    return load_territory(Settings().territory_dir)


@pytest.fixture(scope="module")
def stream(territory: Territory) -> list[Incident | StatusUpdate]:
    return list(Simulator(territory, seed=7, start=START).events(3000))


def _time(event: Record) -> datetime:
    if isinstance(event, Incident):
        return event.reported_at
    if isinstance(event, StatusUpdate):
        return event.at
    assert isinstance(event, Alert)
    return event.sent


def test_deterministic_for_a_seed(territory: Territory, stream: list[Incident | StatusUpdate]) -> None:
    again = list(Simulator(territory, seed=7, start=START).events(3000))
    assert again == stream
    other = list(Simulator(territory, seed=8, start=START).events(50))
    assert other != stream[:50]
    a, b = Simulator(territory, seed=3, start=START), Simulator(territory, seed=3, start=START)
    assert a.flash_flood() == b.flash_flood()


def test_every_event_validates_and_round_trips(stream: list[Incident | StatusUpdate]) -> None:
    for event in stream:
        cls = type(event)
        assert cls.model_validate(event.model_dump()) == event
    for event in stream[:300]:
        assert type(event).decode(event.encode()) == event


def test_stream_is_in_time_order_and_realistic(territory: Territory,
                                               stream: list[Incident | StatusUpdate]) -> None:
    times = [_time(e) for e in stream]
    assert times == sorted(times)
    assert times[0] > START and times[-1] - START < span_for(3000)
    incidents = [e for e in stream if isinstance(e, Incident)]
    updates = [e for e in stream if isinstance(e, StatusUpdate)]
    assert len(incidents) > 500 and len(updates) > 500

    channels = Counter(i.channel for i in incidents)
    assert set(channels) == set(Channel)
    assert channels[Channel.app] > channels[Channel.sensor]
    categories = Counter(i.category for i in incidents)
    assert categories.most_common(1)[0][0] not in (IncidentCategory.flash_flood, IncidentCategory.wildfire)
    assert len(categories) >= 20
    assert {i.municipality for i in incidents} == set(territory.municipalities)

    no_point = [i for i in incidents if i.location is None]
    assert no_point and all(i.address for i in no_point)
    assert all(i.location is not None for i in incidents if i.channel in (Channel.app, Channel.sensor))
    phone_without_point = sum(i.location is None for i in incidents if i.channel == Channel.phone)
    assert phone_without_point > channels[Channel.phone] / 2
    assert any(i.reporter is not None for i in incidents)
    assert all(i.reporter is None for i in incidents if i.channel in (Channel.sensor, Channel.agency))
    # Points are drawn inside the declared town, except the few reports filed across a border.
    located = [i for i in incidents if i.location is not None]
    moved = [i for i in located if territory.locate(i.location.lon, i.location.lat) != (i.municipality,)]
    assert 0 < len(moved) < len(located) * 0.05


def test_status_updates_follow_their_incident(territory: Territory,
                                              stream: list[Incident | StatusUpdate]) -> None:
    seen: dict[object, Incident] = {}
    lifecycle: dict[object, list[IncidentStatus]] = {}
    for event in stream:
        if isinstance(event, Incident):
            assert route_incident(event, territory).routable
            seen[event.id] = event
            continue
        incident = seen[event.incident_id]  # never before its incident
        assert event.at >= incident.reported_at
        assert event.agency_id in route_incident(incident, territory).agencies
        lifecycle.setdefault((event.incident_id, event.agency_id), []).append(event.status)
    order = list(IncidentStatus)
    statuses = Counter(s for steps in lifecycle.values() for s in steps)
    for s in (IncidentStatus.acknowledged, IncidentStatus.dispatched, IncidentStatus.on_site,
              IncidentStatus.resolved, IncidentStatus.rejected):
        assert statuses[s] > 0, s
    for steps in lifecycle.values():
        assert steps[0] == IncidentStatus.acknowledged
        if IncidentStatus.rejected not in steps:
            assert steps == sorted(steps, key=order.index)


def test_flash_flood_burst(territory: Territory) -> None:
    sim = Simulator(territory, seed=11, start=START)
    list(sim.events(200))
    before = sim.clock
    burst = sim.flash_flood(incidents=25)
    (alert,) = [e for e in burst if isinstance(e, Alert)]
    incidents = [e for e in burst if isinstance(e, Incident)]
    assert len(incidents) == 25
    assert all(isinstance(e, StatusUpdate) for e in burst[:burst.index(alert)])
    assert alert.sent > before
    info = alert.infos[0]
    assert [(c.value_name, c.value) for c in info.event_codes] == [("veille", "flash_flood")]
    assert info.severity.value == "Severe"
    assert {c.value for c in info.category} == {"Met", "Geo"}

    decision = route_alert(alert, territory)
    assert decision.routable and len(decision.municipalities) >= 2
    assert "syndicat-eaux-veille" in decision.agencies

    area = sim.flood_area()
    towns = set()
    for i in incidents:
        assert isinstance(i, Incident)
        assert i.category in (IncidentCategory.flood, IncidentCategory.flash_flood)
        assert i.severity in (Severity.severe, Severity.critical)
        assert i.location is not None and shapely.intersects_xy(area, i.location.lon, i.location.lat)
        routed = route_incident(i, territory)
        assert routed.routable and not routed.relocated
        assert {"syndicat-eaux-veille", "sdis35", "cellule-veille"} <= set(routed.agencies)
        towns.add(i.municipality)
    assert len(towns) >= 2
    assert towns == set(decision.municipalities)  # every flooded town reports
    assert [_time(e) for e in burst] == sorted(_time(e) for e in burst)
    # The burst's lifecycle follows in the regular stream.
    later = list(sim.events(400))
    flood_ids = {i.id for i in incidents}
    assert any(isinstance(e, StatusUpdate) and e.incident_id in flood_ids for e in later)
    assert min(_time(e) for e in later) >= max(_time(e) for e in burst)


def test_start_must_be_aware(territory: Territory) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Simulator(territory, seed=1, start=datetime(2025, 1, 1))
