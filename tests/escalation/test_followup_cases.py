"""Deadlines of grouped reports (docs/grouping.md, "What bodies receive"): an update creates no
deadline, a split gives the report its own, the case's acknowledgement is not the split's."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from test_followup import IN_35401, KEY, REPORTED, follow, status

from veille.schemas.models import (
    CaseSplit,
    Channel,
    DispatchTarget,
    EventType,
    IncidentCategory,
    IncidentStatus,
    RoutedIncident,
    ServiceKind,
    Severity,
)
from veille.streams.escalation import event_time
from veille.streams.followup import FollowUp, State, ms
from veille.territory import Territory, load_territory
from veille.territory.dispatch import dispatch_ref

SYNDICATE = ("syndicat-eaux-veille", ServiceKind.stormwater, "flood")
HOUR = 3_600_000


@pytest.fixture(scope="module")
def territory() -> Territory:
    return load_territory()


def routed_v2(incident: uuid.UUID, case: uuid.UUID, *, dispatched: bool, at: datetime = REPORTED,
              severity: Severity = Severity.moderate) -> dict[str, Any]:
    target = DispatchTarget(agency_id=SYNDICATE[0], service=SYNDICATE[1], rule=SYNDICATE[2],
                            cross_boundary=False)
    return RoutedIncident(
        id=incident, municipality="35401", category=IncidentCategory.flash_flood, severity=severity,
        channel=Channel.phone, location=IN_35401, occurred_at=at, reported_at=at, routed_at=at,
        dispatches=[target] if dispatched else [], updates=[] if dispatched else [target], case_id=case,
    ).to_avro()


def did(incident: uuid.UUID) -> str:
    return dispatch_ref(KEY, EventType.incident, str(incident), SYNDICATE[0], SYNDICATE[1])


def split(incident: uuid.UUID, case: uuid.UUID, at: datetime) -> dict[str, Any]:
    return CaseSplit(id=uuid.uuid4(), incident_id=incident, case_id=case, agency_id=SYNDICATE[0],
                     service=SYNDICATE[1], dispatch_id=uuid.UUID(did(incident)), at=at).to_avro()


def _case(f: FollowUp) -> tuple[uuid.UUID, uuid.UUID, State, State]:
    case, later = uuid.uuid4(), uuid.uuid4()
    opened = f.on_record(None, "RoutedIncident", routed_v2(case, case, dispatched=True), 0).state
    later_record = routed_v2(later, case, dispatched=False, at=REPORTED + timedelta(minutes=10))
    update = f.on_record(None, "RoutedIncident", later_record, 0).state
    assert opened is not None and update is not None
    return case, later, opened, update


def test_a_report_received_only_as_an_update_has_no_deadline(territory: Territory) -> None:
    f = follow(territory)
    case, later, opened, update = _case(f)
    assert [(d, name) for d, name, _ in f.pending(opened)] == [(did(case), "ack"), (did(case), "resolve")]
    assert f.pending(update) == []
    # Far past every deadline: only the case's dispatch escalates, never the update.
    far = ms(REPORTED) + 1000 * HOUR
    assert f.due(str(later), update, far) == []
    assert {d.key[1] for d in f.due(str(case), opened, far)} == {did(case)}


def test_a_split_gives_the_report_its_own_deadlines_from_its_time(territory: Territory) -> None:
    f = follow(territory)
    case, later, _, update = _case(f)
    result = f.on_record(update, "CaseSplit", split(later, case, REPORTED + timedelta(minutes=30)), 0)
    assert result.state is not None and result.events == [("split", "split")]
    reported = ms(REPORTED + timedelta(minutes=10))
    # flash_flood, moderate: the climate deadlines (4 h to acknowledge, 72 h to resolve), from the report.
    assert sorted(f.pending(result.state)) == [(did(later), "ack", reported + 4 * HOUR),
                                               (did(later), "resolve", reported + 72 * HOUR)]
    entry = result.state["d"][did(later)]
    assert (entry["a"], entry["s"], entry["r"]) == SYNDICATE
    # Past its deadline it escalates to the syndicate's supervisor like any dispatch.
    (due, *_) = f.due(str(later), result.state, reported + 4 * HOUR + 1000)
    assert due.key == (str(later), did(later), "ack") and due.outputs
    # A replayed split changes nothing.
    again = f.on_record(result.state, "CaseSplit", split(later, case, REPORTED + timedelta(minutes=40)), 0)
    assert again.state is None and again.events == [("split", "already")]


def test_a_severe_report_split_out_gets_the_urgent_deadlines(territory: Territory) -> None:
    f = follow(territory)
    case, later = uuid.uuid4(), uuid.uuid4()
    state = f.on_record(None, "RoutedIncident",
                        routed_v2(later, case, dispatched=False, severity=Severity.severe), 0).state
    state = f.on_record(state, "CaseSplit", split(later, case, REPORTED), 0).state
    assert state is not None
    assert min(due for _, name, due in f.pending(state) if name == "ack") == ms(REPORTED) + HOUR // 2


def test_acknowledging_the_case_does_not_acknowledge_a_split_report(territory: Territory) -> None:
    f = follow(territory)
    case, later, opened, update = _case(f)
    split_state = f.on_record(update, "CaseSplit", split(later, case, REPORTED), 0).state
    assert split_state is not None
    ack = status(case, SYNDICATE[0], SYNDICATE[1], IncidentStatus.acknowledged, REPORTED + timedelta(hours=1))
    # The router keys the acknowledgement by the case's id: it reaches the case's state only.
    opened = f.on_record(opened, "StatusUpdate", ack, 0).state
    assert opened is not None and not [p for p in f.pending(opened) if p[1] == "ack"]
    assert [p[1] for p in f.pending(split_state)] == ["ack", "resolve"]
    # An acknowledgement of the split report on its own id acknowledges it.
    own = status(later, SYNDICATE[0], SYNDICATE[1], IncidentStatus.acknowledged,
                 REPORTED + timedelta(hours=1))
    split_state = f.on_record(split_state, "StatusUpdate", own, 0).state
    assert split_state is not None and [p[1] for p in f.pending(split_state)] == ["resolve"]


def test_a_split_the_worker_cannot_time_is_counted_not_crashed(territory: Territory) -> None:
    f = follow(territory)
    case, later = uuid.uuid4(), uuid.uuid4()
    assert f.on_record(None, "CaseSplit", split(later, case, REPORTED), 0).events == [
        ("split", "unknown_report")]
    assert event_time("CaseSplit", split(later, case, REPORTED)) == ms(REPORTED)
