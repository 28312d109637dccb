"""The router's decisions on single messages, without Kafka (streams/router.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from veille.config import Settings
from veille.kafka import Message
from veille.producers.simulator import Simulator
from veille.schemas import codec
from veille.schemas.models import (
    Alert,
    DeadLetter,
    Dispatch,
    GeoPoint,
    Incident,
    IncidentStatus,
    ReporterContact,
    RoutedAlert,
    RoutedIncident,
    StatusUpdate,
)
from veille.streams.batch import process_batch
from veille.streams.dedup import DedupWindow
from veille.streams.router import OutcomeKind, Router
from veille.territory import load_territory
from veille.topics import Topics

NOW = datetime.now(UTC)
TOPICS = Topics("t")


@pytest.fixture(scope="module")
def router() -> Router:
    territory = load_territory(Settings().territory_dir)
    return Router(territory, TOPICS, pseudonym_key=b"k", dispatch_key=b"d", clock=lambda: NOW)


@pytest.fixture()
def sim(router: Router) -> Simulator:
    return Simulator(router.territory, seed=7, start=NOW - timedelta(hours=3), dispatch_key=b"d")


def _msg(topic: str, value: bytes | None, offset: int = 0, key: bytes | None = b"k") -> Message:
    return Message(topic, 0, offset, key, value)


def _incident(sim: Simulator, **over: Any) -> Incident:
    inc = sim.incident(category=over.pop("category", None) or "burglary")
    return inc.model_copy(update=over) if over else inc


def _decoded(outcome: Any, topic: str) -> list[Any]:
    return [codec.decode(o.value).value for o in outcome.outputs if o.topic == topic]


def test_incident_fans_out_to_each_target_and_one_routing_record(router: Router, sim: Simulator) -> None:
    flood = next(e for e in sim.flash_flood(incidents=10) if isinstance(e, Incident))
    outcome = router.process(_msg(TOPICS.intake(flood.municipality), flood.encode()))
    assert outcome.kind == OutcomeKind.routed
    agencies = {t.agency_id for t in outcome.targets}
    assert "sdis35" in agencies and "cellule-veille" in agencies  # flood + severe escalation
    for target in outcome.targets:
        (dispatch,) = [Dispatch.from_avro(v) for v in _decoded(outcome, TOPICS.dispatch(target.agency_id))
                       if v["service"] == target.service]
        assert dispatch.event_id == str(flood.id) and dispatch.rule == target.rule
        assert dispatch.cross_boundary == target.cross_boundary
        assert Incident.decode(dispatch.payload) == flood  # the agency gets the full report
    (routed,) = [RoutedIncident.from_avro(v) for v in _decoded(outcome, TOPICS.routed)]
    assert routed.id == flood.id and list(routed.dispatches) == list(outcome.targets)
    # Deterministic dispatch ids: a re-delivery yields the same ids for agencies to dedupe on.
    again = router.process(_msg(TOPICS.intake(flood.municipality), flood.encode()))
    assert [o.value for o in again.outputs] == [o.value for o in outcome.outputs]


def test_reporter_contact_reaches_agencies_but_never_the_routing_record(
        router: Router, sim: Simulator) -> None:
    inc = _incident(sim, reporter=ReporterContact(email="jeanne@example.fr", phone="0611223344"))
    outcome = router.process(_msg(TOPICS.intake(inc.municipality), inc.encode()))
    routed_bytes = next(o.value for o in outcome.outputs if o.topic == TOPICS.routed)
    assert b"jeanne" not in routed_bytes and b"0611223344" not in routed_bytes
    routed = RoutedIncident.decode(routed_bytes)
    assert routed.reporter_pseudonym and len(routed.reporter_pseudonym) == 32
    other = _incident(sim, reporter=ReporterContact(email="JEANNE@example.fr "))
    out2 = router.process(_msg(TOPICS.intake(other.municipality), other.encode()))
    assert RoutedIncident.decode(out2.outputs[-1].value).reporter_pseudonym == routed.reporter_pseudonym
    dispatch = next(o for o in outcome.outputs if o.topic != TOPICS.routed)
    assert Incident.decode(Dispatch.decode(dispatch.value).payload).reporter is not None


def test_resent_event_is_dropped_and_reused_id_is_dead_lettered(router: Router, sim: Simulator) -> None:
    inc = _incident(sim)
    seen = DedupWindow().batch()
    topic = TOPICS.intake(inc.municipality)
    assert router.process(_msg(topic, inc.encode(), 0), seen).kind == OutcomeKind.routed
    assert router.process(_msg(topic, inc.encode(), 1), seen).kind == OutcomeKind.duplicate
    changed = inc.model_copy(update={"description": "something else"})
    outcome = router.process(_msg(topic, changed.encode(), 2), seen)
    assert outcome.kind == OutcomeKind.dead_letter and outcome.reason == "conflicting_duplicate"


def test_a_batch_remembers_its_ids_only_once_delivered(router: Router, sim: Simulator) -> None:
    inc, other = _incident(sim), _incident(sim)
    window = DedupWindow(capacity=10)
    seen = window.batch()
    outcomes: list[Any] = []
    messages = [_msg(TOPICS.intake(inc.municipality), inc.encode(), 0),
                _msg(TOPICS.intake(inc.municipality), inc.encode(), 1),
                _msg(TOPICS.intake(other.municipality), other.encode(), 2)]
    process_batch(router, messages, seen, outcomes)
    assert [o.kind for o in outcomes] == [OutcomeKind.routed, OutcomeKind.duplicate, OutcomeKind.routed]
    assert len(window) == 0 and seen.pending == [(0, str(inc.id)), (2, str(other.id))]
    following = window.batch(previous=seen)  # pipelined: the batch in flight counts as seen
    assert following.check(str(inc.id), inc.encode(), NOW.timestamp()) == "duplicate"
    seen.commit(lambda owner: owner != 2)  # say the third was dead-lettered on delivery
    assert window.get(str(inc.id)) is not None and window.get(str(other.id)) is None


def test_municipality_must_match_its_intake_topic(router: Router, sim: Simulator) -> None:
    inc = _incident(sim)
    other = next(m for m in router.territory.municipalities if m != inc.municipality)
    outcome = router.process(_msg(TOPICS.intake(other), inc.encode(), 42))
    assert outcome.kind == OutcomeKind.dead_letter and outcome.reason == "municipality_mismatch"
    (out,) = outcome.outputs
    assert out.topic == TOPICS.dead_letter_restricted  # may hold a reporter's contact
    dl = DeadLetter.decode(out.value)
    assert dl.source_topic == TOPICS.intake(other) and dl.source_offset == 42
    assert dl.original_value == inc.encode() and other in dl.message


@pytest.mark.parametrize(
    ("value", "reason"),
    [(b"", "empty_message"), (None, "empty_message"), (b"\xc3\x01garbage!!", "unknown_schema"),
     (b"not avro at all", "unknown_format")],
)
def test_undecodable_messages_are_dead_lettered(router: Router, value: bytes | None, reason: str) -> None:
    outcome = router.process(_msg(TOPICS.intake("35401"), value, key=None))
    assert outcome.kind == OutcomeKind.dead_letter and outcome.reason == reason
    assert DeadLetter.decode(outcome.outputs[0].value).original_value == value


def test_wrong_record_type_and_invalid_content(router: Router, sim: Simulator) -> None:
    alert = next(e for e in sim.flash_flood(incidents=2) if isinstance(e, Alert))
    assert router.process(_msg(TOPICS.intake("35401"), alert.encode())).reason == "wrong_record_type"
    inc = _incident(sim)
    bad = inc.to_avro() | {"municipality": "ABCDE"}
    outcome = router.process(_msg(TOPICS.intake("35401"), codec.encode("Incident", bad)))
    assert outcome.reason == "validation_error" and "municipality" in DeadLetter.decode(
        outcome.outputs[0].value).message


def test_point_outside_territory_is_unroutable(router: Router, sim: Simulator) -> None:
    inc = _incident(sim, location=GeoPoint(lat=43.3, lon=5.4))  # Marseille
    outcome = router.process(_msg(TOPICS.intake(inc.municipality), inc.encode()))
    assert outcome.kind == OutcomeKind.dead_letter and outcome.reason == "unroutable"
    assert "outside" in DeadLetter.decode(outcome.outputs[0].value).message


def test_alert_fans_out_and_is_recorded(router: Router, sim: Simulator) -> None:
    alert = next(e for e in sim.flash_flood(incidents=2) if isinstance(e, Alert))
    outcome = router.process(_msg(TOPICS.alerts, alert.encode()))
    assert outcome.kind == OutcomeKind.routed
    routed = RoutedAlert.decode(next(o.value for o in outcome.outputs if o.topic == TOPICS.routed))
    assert len(routed.municipalities) >= 2 and routed.category == "flash_flood"
    safeguards = {t.agency_id for t in outcome.targets if t.service == "municipal_safeguard"}
    assert safeguards == {f"mairie-{m}" for m in routed.municipalities}
    assert outcome.outputs[0].topic.startswith("t.dispatch.")


def test_status_updates_are_checked_and_forwarded(router: Router, sim: Simulator) -> None:
    incident = _incident(sim)
    routed = router.process(_msg(TOPICS.intake(incident.municipality), incident.encode()))
    dispatch = Dispatch.decode(next(o.value for o in routed.outputs if o.topic.startswith("t.dispatch.")))
    update = StatusUpdate(id=uuid.uuid4(), incident_id=incident.id, agency_id=dispatch.agency_id,
                          dispatch_id=dispatch.id, status=IncidentStatus.acknowledged, at=NOW)
    outcome = router.process(_msg(TOPICS.status, update.encode()))
    assert outcome.kind == OutcomeKind.forwarded and StatusUpdate.decode(outcome.outputs[0].value) == update
    rogue = update.model_copy(update={"agency_id": "pm-nowhere"})
    outcome = router.process(_msg(TOPICS.status, rogue.encode()))
    assert outcome.reason == "unknown_agency" and outcome.outputs[0].topic == TOPICS.dead_letter


def test_an_agency_cannot_speak_for_another_nor_for_an_incident_it_was_not_sent(
        router: Router, sim: Simulator) -> None:
    """Issue 15 #3: the dispatch id (keyed hash) proves who was dispatched what."""
    incident = _incident(sim)
    routed = router.process(_msg(TOPICS.intake(incident.municipality), incident.encode()))
    dispatch = Dispatch.decode(next(o.value for o in routed.outputs if o.topic.startswith("t.dispatch.")))
    other = next(a for a in router.territory.agencies if a not in {t.agency_id for t in routed.targets})
    base = StatusUpdate(id=uuid.uuid4(), incident_id=incident.id, agency_id=dispatch.agency_id,
                        dispatch_id=dispatch.id, status=IncidentStatus.resolved, at=NOW)
    forged = [
        base.model_copy(update={"agency_id": other}),  # someone else's name, a stolen reference
        base.model_copy(update={"dispatch_id": None}),  # no reference at all
        base.model_copy(update={"incident_id": uuid.uuid4()}),  # an incident that does not exist
        base.model_copy(update={"dispatch_id": uuid.uuid4()}),  # a guessed reference
    ]
    for update in forged:
        outcome = router.process(_msg(TOPICS.status, update.encode()))
        assert (outcome.kind, outcome.reason) == (OutcomeKind.dead_letter, "not_dispatched"), update
        assert not any(o.topic == TOPICS.routed for o in outcome.outputs)
    # Another router key derives other ids: the reference cannot be computed from public data.
    stranger = Router(router.territory, TOPICS, pseudonym_key=b"k", dispatch_key=b"other", clock=lambda: NOW)
    assert stranger.process(_msg(TOPICS.status, base.encode())).reason == "not_dispatched"
