"""Hostile and careless publishers (issue 15): no message may stop the router, vanish, or
speak for someone else.

Pure cases run through ``Router.process``; the hostile run replays the issue's attacks on
the real broker against the real router process, with valid events all around; the attempt
log is exercised on the real broker through ``BatchHandler`` with a sender that fails on one
message as a client library bug would.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from hub_helpers import HubProcess, committed_offsets, hub_settings, read_topics

from veille.deadletter import MAX_ORIGINAL_BYTES
from veille.kafka import Confirmation, Message
from veille.producers.simulator import Simulator, span_for
from veille.schemas.models import (
    Alert,
    AlertArea,
    AlertInfo,
    DeadLetter,
    Dispatch,
    GeoPoint,
    Incident,
    IncidentStatus,
    StatusUpdate,
)
from veille.streams.attempts import AttemptLog
from veille.streams.batch import BatchFailed, BatchHandler
from veille.streams.dedup import DedupWindow
from veille.streams.output import OutputSender
from veille.streams.router import OutcomeKind, Router
from veille.territory import load_territory
from veille.territory.routing import route_incident
from veille.topics import Topics

NOW = datetime.now(UTC)
TOPICS = Topics("tb")


@pytest.fixture(scope="module")
def router() -> Router:
    return Router(load_territory(), TOPICS, pseudonym_key=b"k", dispatch_key=b"d", clock=lambda: NOW)


def _sim(seed: int = 3, dispatch_key: bytes = b"d") -> Simulator:
    return Simulator(load_territory(), seed=seed, start=NOW - span_for(400), dispatch_key=dispatch_key)


def scribble_alert(points: int, seed: int = 1) -> Alert:
    """A CAP alert whose polygon is a ring of random points: self-intersecting everywhere."""
    rng = random.Random(seed)
    ring = [GeoPoint(lat=rng.uniform(48.0, 48.3), lon=rng.uniform(-1.9, -1.5)) for _ in range(points)]
    info = AlertInfo(category=["Met"], event="Orages", urgency="Immediate", severity="Severe",
                     certainty="Observed",
                     areas=[AlertArea(area_desc="scribble", polygons=[[*ring, ring[0]]])])
    return Alert(identifier=f"scribble-{points}-{seed}", sender="x@example.org", sent=NOW, status="Actual",
                 msg_type="Alert", scope="Public", infos=[info])


def forged_alert_bytes(points: int) -> bytes:
    """The bytes a hostile client writes straight to the alerts topic (models never ran)."""
    small = scribble_alert(10)
    data = small.to_avro()
    rng = random.Random(points)
    ring = [{"lat": rng.uniform(48.0, 48.3), "lon": rng.uniform(-1.9, -1.5)} for _ in range(points)]
    data["infos"][0]["areas"][0]["polygons"] = [[*ring, ring[0]]]
    data["identifier"] = f"forged-{points}"
    from veille.schemas import codec

    return codec.encode("Alert", data)


# --------------------------------------------------------------------------- pure


def test_a_huge_message_makes_a_bounded_dead_letter(router: Router) -> None:
    value = random.Random(0).randbytes(1_040_000)
    outcome = router.process(Message(TOPICS.intake("35402"), 0, 7, b"k" * 5000, value))
    (out,) = outcome.outputs
    letter = DeadLetter.decode(out.value)
    assert len(out.value) < MAX_ORIGINAL_BYTES + 8 * 1024  # always fits a Kafka message
    assert letter.original_value == value[:MAX_ORIGINAL_BYTES] and letter.original_size == len(value)
    assert letter.original_sha256 == hashlib.sha256(value).hexdigest()
    assert letter.original_key == b"k" * 1024 and letter.source_offset == 7


def test_over_complex_alerts_are_dead_lettered_fast_and_small_scribbles_are_repaired(router: Router) -> None:
    for points in (250, 500, 6000):
        started = time.perf_counter()
        outcome = router.process(Message(TOPICS.alerts, 0, points, None, forged_alert_bytes(points)))
        assert (outcome.kind, outcome.reason) == (OutcomeKind.dead_letter, "too_complex"), points
        assert time.perf_counter() - started < 2.0  # was 6.9 s, 70 s and > 12 min
    outcome = router.process(Message(TOPICS.alerts, 0, 1, None, scribble_alert(150).encode()))
    assert outcome.kind == OutcomeKind.routed  # a small self-intersecting ring is repaired, not refused


def test_alert_bounds_are_checked_before_kafka() -> None:
    with pytest.raises(ValueError, match="too_complex"):
        scribble_alert(300)
    with pytest.raises(ValueError, match="at most 5000"):
        scribble_alert(6000)


def test_fuzzed_messages_are_conserved(router: Router) -> None:
    """Seeded mutants of valid messages: each is routed, dropped as a duplicate, forwarded or
    dead-lettered with its exact bytes — never lost, never an internal error."""
    sim = _sim(seed=21)
    rng = random.Random(2026)
    events: list[Any] = list(sim.events(300)) + sim.flash_flood(incidents=20)
    seen = DedupWindow().batch()
    outcomes: Counter[OutcomeKind] = Counter()
    produced = 0
    for i in range(3000):
        event = rng.choice(events)
        topic = (TOPICS.intake(event.municipality) if isinstance(event, Incident)
                 else TOPICS.alerts if isinstance(event, Alert) else TOPICS.status)
        value = bytearray(event.encode())
        mutation = rng.randrange(6)
        if mutation == 0:
            value[rng.randrange(len(value))] = rng.randrange(256)
        elif mutation == 1:
            del value[rng.randrange(len(value)):]
        elif mutation == 2:
            value += rng.randbytes(rng.randrange(1, 64))
        elif mutation == 3:
            start = rng.randrange(len(value))
            value[start:start + 8] = rng.randbytes(8)
        elif mutation == 4:
            topic = rng.choice([TOPICS.intake("35401"), TOPICS.alerts, TOPICS.status])
        # mutation 5: the original, re-sent
        produced += 1
        outcome = router.process(Message(topic, 0, i, None, bytes(value)), seen)
        outcomes[outcome.kind] += 1
        assert outcome.reason != "internal_error", outcome
        if outcome.kind == OutcomeKind.dead_letter:
            letter = DeadLetter.decode(outcome.outputs[0].value)
            assert letter.original_value == bytes(value)[:MAX_ORIGINAL_BYTES] and letter.source_offset == i
        elif outcome.kind == OutcomeKind.routed:
            assert any(o.topic == TOPICS.routed for o in outcome.outputs)
    assert produced == sum(outcomes.values())
    assert outcomes[OutcomeKind.routed] and outcomes[OutcomeKind.dead_letter], outcomes
    assert outcomes[OutcomeKind.duplicate], outcomes


# --------------------------------------------------------------------------- the real broker


def _set_topic_config(settings: Any, topic: str, **config: str) -> None:
    admin = AdminClient(settings.kafka_client_config())
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(k.replace("_", "."), v, incremental_operation=AlterConfigOpType.SET)
        for k, v in config.items()])
    for fut in admin.incremental_alter_configs([res]).values():
        fut.result(timeout=30)


def _end_offsets(settings: Any, topics: list[str]) -> dict[tuple[str, int], int]:
    from confluent_kafka import Consumer

    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"ends-{uuid.uuid4()}"})
    try:
        out = {}
        for topic in topics:
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                out[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        return out
    finally:
        consumer.close()


def test_hostile_publishers_cannot_stop_the_router(kafka: Any, tmp_path: Path) -> None:
    settings = hub_settings(kafka.settings, tmp_path)
    topics = Topics(settings.topic_prefix)
    territory = load_territory()
    sim = Simulator(territory, seed=15, start=datetime.now(UTC) - timedelta(days=1))
    valid = sim.incidents(600)
    # An operator's topic still at the broker's ~1 MiB (the deployment), and one
    # agency's dispatch topic capped small: a dispatch to it is refused by the broker, and
    # so are the valid dispatches batched with it, which must still go through.
    _set_topic_config(settings, topics.intake("35402"), max_message_bytes="1100000")
    _set_topic_config(settings, topics.dispatch("pm-35401"), max_message_bytes="1500")
    victim = next(i for i in valid if "pm-35401" in route_incident(i, territory).agencies)
    noise = "".join(random.Random(2).choices("abcdefghijklmnopqrstuvwxyz ", k=4000))  # 2.4 kB zstd
    bulky = victim.model_copy(update={"id": uuid.uuid4(), "description": noise})
    raw = Producer({**settings.kafka_client_config(), "message.max.bytes": 2_000_000})
    refused: list[KafkaError | None] = []
    huge = random.Random(1).randbytes(1_040_000)

    def produce_alone(topic: str, value: bytes) -> KafkaError | None:
        assert raw.flush(30) == 0  # alone in its record batch: only its own size counts
        raw.produce(topic, value=value, on_delivery=lambda err, _m: refused.append(err))
        assert raw.flush(30) == 0
        return refused.pop()

    # A topic at the hub's own bound refuses it at the door.
    assert produce_alone(topics.intake("35403"), huge).code() == KafkaError.MSG_SIZE_TOO_LARGE  # type: ignore[union-attr]
    # Where the topic still allows ~1 MiB, it gets in (the router, starting, re-aligns the
    # topic on the hub's bound: later ones are refused at the door).
    deadline = time.monotonic() + 30  # the broker applies a topic's new config a moment later
    while produce_alone(topics.intake("35402"), huge) is not None:
        assert time.monotonic() < deadline
        time.sleep(1)
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    try:
        router.info("router.json")
        for i, inc in enumerate(valid):
            raw.produce(topics.intake(inc.municipality), key=inc.id.bytes, value=inc.encode())
            if i == 200:
                raw.produce(topics.alerts, value=forged_alert_bytes(6000))
                raw.produce(topics.intake(bulky.municipality), key=bulky.id.bytes, value=bulky.encode())
            if i == 300:  # a status in another agency's name, for an incident that does not exist
                raw.produce(topics.status, value=StatusUpdate(
                    id=uuid.uuid4(), incident_id=uuid.uuid4(), agency_id="pm-35401", dispatch_id=uuid.uuid4(),
                    status=IncidentStatus.resolved, at=datetime.now(UTC)).encode())
        assert raw.flush(30) == 0

        records = read_topics(
            settings, [topics.routed, topics.dead_letter, topics.dead_letter_restricted], timeout=120,
            until=lambda out: sum("deadletter" in t for t, _ in out) >= 4
            and any(d.value["source_topic"] == topics.intake("35402") for t, d in out if "deadletter" in t)
            and len({d.value.get("id") for t, d in out if t == topics.routed}) >= len(valid))
        routed = {str(d.value["id"]) for t, d in records if t == topics.routed}
        assert {str(i.id) for i in valid} <= routed, router.log()
        dead = [DeadLetter.model_validate(d.value) for t, d in records if "deadletter" in t]
        letters = {x.reason: x for x in dead}
        assert len(dead) == 4 and {"too_complex", "not_dispatched", "output_rejected"} <= set(letters), \
            (Counter((x.reason, x.message[:60]) for x in dead), router.log())
        (garbage,) = [x for x in dead if x.source_topic == topics.intake("35402")]
        assert garbage.original_size == len(huge) and garbage.original_value == huge[:MAX_ORIGINAL_BYTES]
        assert "MSG_SIZE_TOO_LARGE" in letters["output_rejected"].message

        # Everything was handled, so everything is committed — and nothing beyond.
        group = f"{settings.topic_prefix}-router"
        sources = [topics.intake(m) for m in territory.municipalities] + [topics.alerts, topics.status]
        ends = {k: v for k, v in _end_offsets(settings, sources).items() if v > 0}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            committed = committed_offsets(settings, group, sources)
            if all(committed.get(k, -1) == v for k, v in ends.items()):
                break
            time.sleep(1)
        assert all(committed.get(k, -1) == v for k, v in ends.items()), (committed, ends)
        assert router.proc is not None and router.proc.poll() is None  # never restarted
    finally:
        code = router.stop(timeout=30)
    assert code == 0, router.log()  # SIGTERM stops it cleanly


class ClientBug(OutputSender):
    """The real sender, failing like a client library bug whenever one event's output is in."""

    def __init__(self, settings: Any, poison: bytes) -> None:
        super().__init__(settings)
        self.poison = poison

    def send(self, outputs: Any) -> Confirmation:
        if any(o.key == self.poison for _, o in outputs):
            raise RuntimeError("client library bug")
        return super().send(outputs)


def test_a_message_that_keeps_failing_is_isolated_then_dead_lettered(kafka: Any, tmp_path: Path) -> None:
    settings = hub_settings(kafka.settings, tmp_path)
    topics = Topics(settings.topic_prefix)
    territory = load_territory()
    sim = Simulator(territory, seed=8, start=datetime.now(UTC) - timedelta(hours=3))
    incidents = sim.incidents(12)
    poison = incidents[5]
    messages = [Message(topics.intake(i.municipality), 0, n, i.id.bytes, i.encode())
                for n, i in enumerate(incidents)]
    log_path = tmp_path / "attempts.json"

    def attempt() -> None:  # one router life: a fresh process would rebuild exactly this
        router = Router(territory, topics, pseudonym_key=b"k", dispatch_key=b"d")
        handler = BatchHandler(router, ClientBug(settings, str(poison.id).encode()), DedupWindow(100),
                               AttemptLog(log_path))
        asyncio.run(handler.handle(messages))

    with pytest.raises(BatchFailed):
        attempt()  # the whole batch failed: every offset is a suspect
    assert len(AttemptLog(log_path).entries) == len(messages)
    with pytest.raises(BatchFailed):
        attempt()  # one at a time: the failure now names its message
    assert AttemptLog(log_path).condemned((messages[5].topic, 0, 5))
    attempt()  # dead-lettered, the others routed
    assert not AttemptLog(log_path).entries

    records = read_topics(settings, [topics.routed, topics.dead_letter_restricted], timeout=30,
                          until=lambda out: sum("deadletter" in t for t, _ in out) >= 1
                          and len({d.value["id"] for t, d in out if t == topics.routed}) >= 11)
    (letter,) = [DeadLetter.model_validate(d.value) for t, d in records if "deadletter" in t]
    assert (letter.reason, letter.source_offset, letter.attempts) == ("repeated_failure", 5, 3)
    routed = {str(d.value["id"]) for t, d in records if t == topics.routed}
    assert routed == {str(i.id) for i in incidents if i is not poison}


def test_status_updates_need_the_dispatch_reference_end_to_end(kafka: Any, tmp_path: Path) -> None:
    """An agency that read its dispatch can update its incident; a forged reference cannot."""
    settings = hub_settings(kafka.settings, tmp_path)
    topics = Topics(settings.topic_prefix)
    incident = _sim(seed=4, dispatch_key=settings.dispatch_key.get_secret_value().encode()).incident(
        category="burglary", at=datetime.now(UTC) - timedelta(minutes=5), lifecycle=False)
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    try:
        router.info("router.json")
        raw = Producer(settings.kafka_client_config())
        raw.produce(topics.intake(incident.municipality), value=incident.encode())
        raw.flush(10)
        agencies = list(territory_agencies())
        out = read_topics(settings, [topics.dispatch(a) for a in agencies], timeout=60,
                          until=lambda out: len(out) >= 1)
        topic, decoded = out[0]
        dispatch = Dispatch.model_validate(decoded.value)
        genuine = StatusUpdate(id=uuid.uuid4(), incident_id=incident.id, agency_id=dispatch.agency_id,
                               dispatch_id=dispatch.id, status=IncidentStatus.acknowledged,
                               at=datetime.now(UTC))
        other = next(a for a in agencies if a != dispatch.agency_id)
        forged = genuine.model_copy(update={"id": uuid.uuid4(), "agency_id": other})
        raw.produce(topics.status, value=forged.encode())
        raw.produce(topics.status, value=genuine.encode())
        raw.flush(10)
        records = read_topics(settings, [topics.routed, topics.dead_letter], timeout=60,
                              until=lambda out: any(d.record_type == "StatusUpdate" for _, d in out)
                              and any(t == topics.dead_letter for t, _ in out))
        statuses = [d.value for t, d in records if t == topics.routed and d.record_type == "StatusUpdate"]
        assert [s["id"] for s in statuses] == [genuine.id]
        (letter,) = [d.value for t, d in records if t == topics.dead_letter]
        assert letter["reason"] == "not_dispatched" and topic.endswith(dispatch.agency_id)
    finally:
        assert router.stop() == 0


def territory_agencies() -> list[str]:
    return sorted(load_territory().agencies)

