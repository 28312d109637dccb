"""The change detection, pure: one message per change of the incident's overall state."""

from __future__ import annotations

import datetime as dt
import uuid

from notify_helpers import routed, status

from veille.notify.changes import (
    Change,
    Phase,
    State,
    Track,
    apply_routed,
    apply_status,
    change,
    overall,
    told_after,
)
from veille.schemas.models import RoutedIncident, StatusUpdate

T0 = dt.datetime(2026, 3, 12, 14, 0, tzinfo=dt.UTC)


def told_sequence(records: list[RoutedIncident | StatusUpdate]) -> list[Change]:
    """What the notifier tells, record after record (its fold, without a broker)."""
    track, told, out = Track(), None, []
    for record in records:
        if isinstance(record, RoutedIncident):
            apply_routed(track, record)
        else:
            apply_status(track, record)
        now = overall(track)
        sent = change(told, now)
        if sent is not None:
            out.append(sent)
        told = told_after(told, now, sent)
    return out


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def test_three_bodies_acting_tell_each_step_once() -> None:
    i = uuid.uuid4()
    records: list[RoutedIncident | StatusUpdate] = [routed(i, "a", "b", "c", at=at(0))]
    records += [status(i, body, "acknowledged", at(1 + n)) for n, body in enumerate("abc")]
    records += [status(i, body, "on_site", at(10 + n)) for n, body in enumerate("abc")]
    records += [status(i, body, "resolved", at(20 + n)) for n, body in enumerate("abc")]
    assert told_sequence(records) == [Change.acknowledged, Change.on_site, Change.resolved]


def test_resolved_only_when_every_acting_body_resolved() -> None:
    i = uuid.uuid4()
    track = Track()
    apply_routed(track, routed(i, "a", "b", at=at(0)))
    apply_status(track, status(i, "b", "acknowledged", at(1)))
    apply_status(track, status(i, "a", "resolved", at(1)))
    assert overall(track).phase is Phase.acknowledged  # b still has it
    apply_status(track, status(i, "b", "rejected", at(2), reason="no_action_needed"))
    assert overall(track).phase is Phase.resolved  # b is out: a's resolution is the incident's


def test_acknowledged_rerouted_resolved() -> None:
    """The issue's sequence: acknowledged, refused as not competent, re-dispatched, resolved."""
    i = uuid.uuid4()
    records = [routed(i, "mairie", at=at(0)), status(i, "mairie", "acknowledged", at(1)),
               status(i, "mairie", "rejected", at(2), reason="not_competent"),
               routed(i, "voirie", rule="streetlight-35401+rerouted", at=at(3)),
               status(i, "voirie", "resolved", at(30))]
    assert told_sequence(records) == [Change.acknowledged, Change.rerouted, Change.resolved]


def test_a_body_that_never_answered_holds_nothing_back() -> None:
    i = uuid.uuid4()
    track = Track()
    apply_routed(track, routed(i, "a", "b", at=at(0)))
    apply_status(track, status(i, "a", "resolved", at(1)))
    assert overall(track).phase is Phase.resolved


def test_a_refusal_awaiting_its_rerouting_is_not_told() -> None:
    i = uuid.uuid4()
    track = Track()
    apply_routed(track, routed(i, "mairie", at=at(0)))
    apply_status(track, status(i, "mairie", "rejected", at(1), reason="wrong_location"))
    assert overall(track).phase is Phase.awaiting_reroute
    assert change(None, overall(track)) is None


def test_duplicate_and_closing() -> None:
    i = uuid.uuid4()
    assert told_sequence([routed(i, "a", "b", at=at(0)), status(i, "a", "acknowledged", at(1)),
                          status(i, "b", "rejected", at(2), reason="duplicate")]) == \
        [Change.acknowledged, Change.duplicate]
    j = uuid.uuid4()
    assert told_sequence([routed(j, "a", at=at(0)), status(j, "a", "rejected", at(1), reason="other")]) == \
        [Change.closed]


def test_replays_and_late_redeliveries_tell_nothing_more() -> None:
    i = uuid.uuid4()
    first = routed(i, "a", at=at(0))
    ack, done = status(i, "a", "acknowledged", at(1)), status(i, "a", "resolved", at(5))
    # The same records again (a restart from older offsets), then an older status re-delivered.
    assert told_sequence([first, ack, done, first, ack, done, status(i, "a", "on_site", at(3))]) == \
        [Change.acknowledged, Change.resolved]


def test_reopened_after_resolved() -> None:
    i = uuid.uuid4()
    assert told_sequence([routed(i, "a", at=at(0)), status(i, "a", "resolved", at(1)),
                          status(i, "a", "reopened", at(2)), status(i, "a", "resolved", at(3))]) == \
        [Change.resolved, Change.reopened, Change.resolved]


def test_first_routing_is_not_told_and_states_round_trip() -> None:
    assert change(None, State(Phase.transmitted, 1)) is None
    state = State(Phase.on_site, 2)
    assert State.from_json(state.as_json()) == state
    track = Track()
    apply_routed(track, routed(uuid.uuid4(), "a", at=at(0)))
    assert Track.from_json(track.as_json()) == track


def test_bodies_added_to_a_routing_are_no_rerouting() -> None:
    """A case raised by its size is routed again with its bodies and the monitoring cell: the
    resident is not told it was handed to another service (issue 25); a re-routing after a
    refusal, which lists the new body only, is."""
    i = uuid.uuid4()
    records = [routed(i, "siba", "pm", at=at(0)), status(i, "siba", "acknowledged", at(1)),
               routed(i, "siba", "pm", "cellule", rule="climate-severe", at=at(2)),
               status(i, "cellule", "on_site", at(3))]
    assert told_sequence(records) == [Change.acknowledged, Change.on_site]
