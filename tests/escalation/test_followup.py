"""The follow-up of dispatches without a broker: deadlines, acknowledgements, refusals, read-back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from veille.schemas import codec
from veille.schemas.models import (
    Channel,
    DispatchTarget,
    EventType,
    GeoPoint,
    IncidentCategory,
    IncidentStatus,
    RejectionReason,
    RoutedIncident,
    ServiceKind,
    Severity,
    StatusUpdate,
)
from veille.streams.escalation import PartitionClocks
from veille.streams.followup import FollowUp, State, ms
from veille.territory import Territory, load_territory
from veille.territory.dispatch import dispatch_ref
from veille.topics import Topics

KEY = b"test-dispatch-key"
TOPICS = Topics("t")
REPORTED = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
IN_35401 = GeoPoint(lat=48.15, lon=-1.70)  # Montveille


@pytest.fixture(scope="module")
def territory() -> Territory:
    return load_territory()


def follow(territory: Territory, tolerance_ms: int = 1000, max_hops: int = 3) -> FollowUp:
    return FollowUp(territory, TOPICS, dispatch_key=KEY, tolerance_ms=tolerance_ms, max_hops=max_hops,
                    encode=lambda _topic, record_type, value: codec.encode(record_type, value))


def routed(incident: uuid.UUID, category: IncidentCategory = IncidentCategory.burglary,
           targets: tuple[tuple[str, ServiceKind, str], ...] = (("pm-35401", ServiceKind.municipal_police,
                                                                  "security"),)) -> dict[str, Any]:
    return RoutedIncident(
        id=incident, municipality="35401", category=category, severity=Severity.minor, channel=Channel.app,
        location=IN_35401, occurred_at=REPORTED, reported_at=REPORTED, routed_at=REPORTED,
        dispatches=[DispatchTarget(agency_id=a, service=s, rule=r, cross_boundary=False)
                    for a, s, r in targets],
    ).to_avro()


def status(incident: uuid.UUID, agency: str, service: ServiceKind, st: IncidentStatus, at: datetime,
           reason: RejectionReason | None = None, corrected: GeoPoint | None = None) -> dict[str, Any]:
    did = uuid.UUID(dispatch_ref(KEY, EventType.incident, str(incident), agency, service))
    return StatusUpdate(id=uuid.uuid4(), incident_id=incident, agency_id=agency, dispatch_id=did, status=st,
                        at=at, reason=reason, corrected_location=corrected).to_avro()


def decoded(output: Any) -> tuple[str, dict[str, Any]]:
    d = codec.decode(output.value)
    return d.record_type, d.value


def test_a_missed_acknowledgement_escalates_once_to_the_supervisor(territory: Territory) -> None:
    f = follow(territory)
    incident = uuid.uuid4()
    state = f.on_record(None, "RoutedIncident", routed(incident), 0).state
    assert state is not None
    (did, name, due), *_ = f.pending(state)
    assert name == "ack" and due == ms(REPORTED) + 8 * 3_600_000  # security: 8 h to acknowledge
    assert f.due(str(incident), state, due + 999) == []  # within the tolerance
    (escalation,) = [d for d in f.due(str(incident), state, due + 1000)]
    dispatch, record = escalation.outputs
    assert dispatch.topic == TOPICS.dispatch("mairie-35401")  # escalation_to of pm-35401
    kind, value = decoded(dispatch)
    assert kind == "Dispatch" and value["rule"] == "overdue:ack" and value["service"] == "municipal_safeguard"
    assert codec.decode(value["payload"]).record_type == "Incident"
    kind, value = decoded(record)
    assert kind == "Redispatch" and value["kind"] == "escalated" and str(value["previous_id"]) == did
    # Read back: the deadline is escalated, the timer finds nothing more.
    state = f.on_record(state, "Redispatch", value, 0).state
    assert state is not None
    assert [p for p in f.pending(state) if p[1] == "ack"] == []
    assert f.due(str(incident), state, due + 10_000_000) == []


def test_a_body_a_later_routing_adds_is_timed_from_that_routing(territory: Territory) -> None:
    """A case raised by its size routes its first report again with the monitoring cell added
    (docs/grouping.md): the cell's deadlines start when it received the case, the first bodies'
    stay; the same routing read again changes nothing."""
    f = follow(territory)
    incident = uuid.uuid4()
    state = f.on_record(None, "RoutedIncident", routed(incident), 0).state
    later = routed(incident, targets=(("pm-35401", ServiceKind.municipal_police, "security"),
                                      ("cellule-veille", ServiceKind.monitoring_cell, "climate-severe")))
    later["routed_at"] = REPORTED + timedelta(hours=2)
    state = f.on_record(state, "RoutedIncident", later, 0).state
    state = f.on_record(state, "RoutedIncident", later, 0).state
    assert state is not None
    acks = {state["d"][did]["a"]: due for did, name, due in f.pending(state) if name == "ack"}
    assert acks == {"pm-35401": ms(REPORTED) + 8 * 3_600_000,
                    "cellule-veille": ms(REPORTED) + 10 * 3_600_000}


def test_an_acknowledgement_before_the_deadline_cancels_it(territory: Territory) -> None:
    f = follow(territory)
    incident = uuid.uuid4()
    state = f.on_record(None, "RoutedIncident", routed(incident), 0).state
    ack = status(incident, "pm-35401", ServiceKind.municipal_police, IncidentStatus.acknowledged,
                 REPORTED + timedelta(minutes=5))
    state = f.on_record(state, "StatusUpdate", ack, 0).state
    assert state is not None
    assert [name for _, name, _ in f.pending(state)] == ["resolve"]
    far = ms(REPORTED) + 8 * 3_600_000 + 10_000
    assert f.due(str(incident), state, far) == []


def test_a_refusal_re_routes_across_the_boundary_once(territory: Territory) -> None:
    f = follow(territory)
    incident = uuid.uuid4()
    state = f.on_record(None, "RoutedIncident", routed(incident), 0).state
    in_35402 = GeoPoint(lat=48.175, lon=-1.83)
    assert territory.locate(in_35402.lon, in_35402.lat) == ("35402",)
    refusal = status(incident, "pm-35401", ServiceKind.municipal_police, IncidentStatus.rejected,
                     REPORTED + timedelta(minutes=1), RejectionReason.wrong_location, in_35402)
    result = f.on_record(state, "StatusUpdate", refusal, 0)
    dispatch, record = result.outputs
    assert dispatch.topic == TOPICS.dispatch("pm-35402")
    _, value = decoded(dispatch)
    assert value["rule"] == "security+rerouted" and value["cross_boundary"] is False
    assert str(value["id"]) == dispatch_ref(KEY, EventType.incident, str(incident), "pm-35402",
                                            ServiceKind.municipal_police)
    _kind, value = decoded(record)
    assert (value["kind"], value["step"], value["hop"], value["reason"]) == (
        "rerouted", "neighbour", 1, "wrong_location")
    assert result.events == [("rerouted", "neighbour")]
    # The same refusal again (a replay): nothing more.
    again = f.on_record(result.state, "StatusUpdate", refusal, 0)
    assert again.outputs == [] and again.events == [("ignored", "already_rerouted")]


def test_hop_limit_sends_to_the_monitoring_cell(territory: Territory) -> None:
    f = follow(territory, max_hops=1)
    incident = uuid.uuid4()
    state: State | None = f.on_record(None, "RoutedIncident", routed(incident), 0).state
    at = REPORTED + timedelta(minutes=1)
    refusal = status(incident, "pm-35401", ServiceKind.municipal_police, IncidentStatus.rejected, at,
                     RejectionReason.not_competent)
    first = f.on_record(state, "StatusUpdate", refusal, 0)
    assert first.outputs[0].topic == TOPICS.dispatch("mairie-35401")  # the safeguard chain
    second = f.on_record(first.state, "StatusUpdate",
                         status(incident, "mairie-35401", ServiceKind.municipal_safeguard,
                                IncidentStatus.rejected, at, RejectionReason.not_competent), 0)
    assert second.outputs[0].topic == TOPICS.dispatch("cellule-veille")
    assert second.events == [("rerouted", "hop_limit")]


def test_refusals_that_do_not_re_route(territory: Territory) -> None:
    f = follow(territory)
    incident = uuid.uuid4()
    state = f.on_record(None, "RoutedIncident", routed(incident), 0).state
    at = REPORTED + timedelta(minutes=1)
    stranger = f.on_record(state, "StatusUpdate", status(incident, "pm-35402", ServiceKind.municipal_police,
                                                         IncidentStatus.rejected, at,
                                                         RejectionReason.not_competent), 0)
    assert stranger.outputs == [] and stranger.events == [("ignored", "unknown_dispatch")]
    duplicate = f.on_record(state, "StatusUpdate", status(incident, "pm-35401", ServiceKind.municipal_police,
                                                          IncidentStatus.rejected, at,
                                                          RejectionReason.duplicate), 0)
    assert duplicate.outputs == [] and duplicate.events == [("ignored", "other_reason")]


def test_the_clock_never_runs_ahead_of_the_wall_clock_and_follows_a_replay() -> None:
    clocks = PartitionClocks()
    assert clocks.now(0) is None
    old = ms(datetime.now(UTC) - timedelta(days=2))
    clocks.see(0, old)
    assert old <= (clocks.now(0) or 0) < old + 5_000  # a replay: the records' own time
    clocks.see(0, ms(datetime.now(UTC) + timedelta(hours=1)))  # a clock in the future: capped
    assert (clocks.now(0) or 0) <= ms(datetime.now(UTC))


def test_an_idle_partition_runs_on_the_wall_clock() -> None:
    clocks = PartitionClocks(idle_seconds=0.0)  # caught up at once
    clocks.see(1, ms(datetime.now(UTC) - timedelta(hours=9)))
    assert abs((clocks.now(1) or 0) - ms(datetime.now(UTC))) < 1000
