"""A body splits a report out of a case (docs/grouping.md): the router checks the CaseSplit's
dispatch id like a status update's and forwards it to the routed topic keyed by the report."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from hub_helpers import HubProcess, hub_settings, read_topics

from veille.config import Settings
from veille.kafka import Message
from veille.producers.simulator import Simulator
from veille.schemas import codec
from veille.schemas.models import CaseSplit, Dispatch, EventType, ServiceKind
from veille.streams.router import SPLIT_REASON, OutcomeKind, Router
from veille.territory import load_territory
from veille.territory.dispatch import dispatch_id
from veille.topics import Topics

NOW = datetime.now(UTC)
TOPICS = Topics("t")


@pytest.fixture(scope="module")
def router() -> Router:
    territory = load_territory(Settings().territory_dir)
    return Router(territory, TOPICS, pseudonym_key=b"k", dispatch_key=b"d", clock=lambda: NOW)


def _split(router: Router, key: bytes = b"d", **over: Any) -> CaseSplit:
    """A split of a report of a case by the body that received it as an update."""
    agency = next(a for a in router.territory.agencies.values() if ServiceKind.stormwater in a.services)
    report = uuid.uuid4()
    fields: dict[str, Any] = {
        "id": uuid.uuid4(), "incident_id": report, "case_id": uuid.uuid4(), "agency_id": agency.id,
        "service": ServiceKind.stormwater, "at": NOW,
        "dispatch_id": dispatch_id(key, EventType.incident, str(report), agency.id, ServiceKind.stormwater)}
    return CaseSplit(**{**fields, **over})


def _msg(value: bytes) -> Message:
    return Message(TOPICS.status, 0, 0, b"k", value)


def test_a_split_with_the_bodys_dispatch_id_is_forwarded_keyed_by_the_report(router: Router) -> None:
    split = _split(router)
    outcome = router.process(_msg(split.encode()))
    assert (outcome.kind, outcome.reason) == (OutcomeKind.forwarded, SPLIT_REASON)
    (out,) = outcome.outputs
    assert out.topic == TOPICS.routed and out.key == split.incident_id.bytes
    decoded = codec.decode(out.value)
    assert decoded.record_type == "CaseSplit" and CaseSplit.from_avro(decoded.value) == split
    assert outcome.source == f"agency:{split.agency_id}"


def test_forged_splits_are_dead_lettered_and_nothing_is_forwarded(router: Router) -> None:
    split = _split(router)
    other = next(a for a in router.territory.agencies if a != split.agency_id)
    cases = {
        "split_not_dispatched": [
            split.model_copy(update={"agency_id": other}),  # another body's name
            split.model_copy(update={"dispatch_id": uuid.uuid4()}),  # a guessed reference
            split.model_copy(update={"incident_id": uuid.uuid4()}),  # another report
            split.model_copy(update={"service": ServiceKind.health}),  # a service it does not run
            _split(router, key=b"other key"),  # an id derived with another key
        ],
        "unknown_agency": [split.model_copy(update={"agency_id": "nobody"})],
        "split_first_report": [split.model_copy(update={"case_id": split.incident_id})],
    }
    for reason, forged in cases.items():
        for record in forged:
            outcome = router.process(_msg(record.encode()))
            assert (outcome.kind, outcome.reason) == (OutcomeKind.dead_letter, reason), record
            assert [o.topic for o in outcome.outputs] == [TOPICS.dead_letter]


def test_a_split_of_a_report_routed_by_the_router_names_the_dispatch_it_made(router: Router) -> None:
    """The id a body quotes is exactly the id of the dispatch (or update) it received."""
    sim = Simulator(router.territory, seed=3, start=NOW - timedelta(hours=1), dispatch_key=b"d")
    incident = sim.incident(category="flash_flood")
    routed = router.process(Message(TOPICS.intake(incident.municipality), 0, 0, b"k", incident.encode()))
    dispatch = Dispatch.decode(next(o.value for o in routed.outputs if o.topic.startswith("t.dispatch.")))
    split = CaseSplit(id=uuid.uuid4(), incident_id=incident.id, case_id=uuid.uuid4(),
                      agency_id=dispatch.agency_id, service=dispatch.service, dispatch_id=dispatch.id, at=NOW)
    assert router.process(_msg(split.encode())).kind == OutcomeKind.forwarded


def test_router_forwards_a_split_and_dead_letters_a_forged_one(kafka: Any, tmp_path: Path) -> None:
    settings = hub_settings(kafka.settings, tmp_path)
    topics = Topics(settings.topic_prefix)
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    try:
        router.info("router.json")
        key = settings.dispatch_key.get_secret_value().encode()
        territory = load_territory()
        local = Router(territory, topics, pseudonym_key=b"", dispatch_key=key)
        good = _split(local, key=key)
        forged = good.model_copy(update={"id": uuid.uuid4(), "dispatch_id": uuid.uuid4()})
        raw = Producer(settings.kafka_client_config())
        for record in (good, forged):
            raw.produce(topics.status, key=record.incident_id.bytes, value=record.encode())
        raw.flush(10)
        records = read_topics(settings, [topics.routed, topics.dead_letter],
                              until=lambda out: len(out) >= 2)
        routed = [(d.record_type, d.value) for t, d in records if t == topics.routed]
        assert [(kind, str(v["id"])) for kind, v in routed] == [("CaseSplit", str(good.id))], router.log()
        dead = [d.value for t, d in records if t == topics.dead_letter]
        assert [v["reason"] for v in dead] == ["split_not_dispatched"]
    finally:
        router.stop()
