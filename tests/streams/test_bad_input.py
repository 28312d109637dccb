"""The bad-input catalogue: each case ends in a dead-letter record with a precise reason,
counted in a metric, without crashing, while the rest of the stream flows.

The pure cases run through ``Router.process``; one test replays the whole catalogue
through the real router process on the broker, interleaved with good events; one shows a
source of garbage quarantined (range letters, committed) rather than stopping the router.
"""

from __future__ import annotations

import struct
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from hub_helpers import HubProcess, committed_offsets, hub_settings, read_topics, wait_for

from veille.kafka import Message
from veille.producers.simulator import Simulator
from veille.schemas import codec
from veille.schemas.models import Alert, Attachment, DeadLetter, Incident
from veille.streams.dedup import DedupWindow
from veille.streams.router import OutcomeKind, Router
from veille.territory import load_territory
from veille.topics import Topics

NOW = datetime.now(UTC)


def _good(sim: Simulator, **over: Any) -> Incident:
    inc = sim.incident(category="burglary", at=NOW - timedelta(minutes=30))
    return inc.model_copy(update=over) if over else inc


def _forge(inc: Incident, **fields: Any) -> bytes:
    """Valid Avro of an event the models refuse: what a buggy or hostile client can send."""
    return codec.encode("Incident", inc.to_avro() | fields)


def catalogue(sim: Simulator, topics: Topics) -> list[tuple[str, str, bytes | None, bytes | None]]:
    """(reason, topic, key, value) for every bad input of the catalogue.

    The last entry, reason ``__good__``, is the original of the re-used id: it must be
    routed before its tampered copy arrives.
    """

    def on_own_topic(reason: str, inc: Incident, value: bytes | None = None, **fields: Any
                     ) -> tuple[str, str, bytes | None, bytes | None]:
        data = value if value is not None else _forge(inc, **fields)
        return reason, topics.intake(inc.municipality), b"k", data

    good = _good(sim)
    body = good.encode()
    # Header (10) + id (1 + 36) + municipality (1 + 5), then the category's enum index.
    at = 10 + 37 + 6
    forged_enum = body[:at] + bytes([2 * 99]) + body[at + 1:]
    alert = next(e for e in sim.flash_flood(incidents=1) if isinstance(e, Alert))
    inside = sim.incident(category="theft", at=NOW - timedelta(minutes=20))
    assert inside.location is not None
    reused = _good(sim)
    other = "35403" if good.municipality != "35403" else "35404"
    many = [Attachment(uri=f"s3://x/{i}", media_type="image/jpeg").model_dump() for i in range(50)]
    return [
        on_own_topic("truncated", good, body[:-7]),
        on_own_topic("unknown_schema", good, b"\xc3\x01" + struct.pack("<Q", 0xDEADBEEF) + body[10:]),
        on_own_topic("wrong_record_type", good, alert.encode()),
        on_own_topic("validation_error", good, id=str(uuid.uuid4()), municipality=""),
        on_own_topic("corrupt", good, forged_enum),
        on_own_topic("unroutable", _good(sim), location={"lat": 43.3, "lon": 5.4}),
        on_own_topic("invalid_coordinates", _good(sim), location={"lat": float("nan"), "lon": -1.7}),
        on_own_topic("swapped_coordinates", inside,
                     location={"lat": inside.location.lon, "lon": inside.location.lat}),
        on_own_topic("invalid_timestamp", _good(sim), reported_at=NOW + timedelta(days=30)),
        on_own_topic("invalid_timestamp", _good(sim), occurred_at=datetime(2001, 1, 1, tzinfo=UTC)),
        on_own_topic("oversized_field", _good(sim), description="x" * 10_000),
        on_own_topic("oversized_field", _good(sim), attachments=many),
        on_own_topic("conflicting_duplicate", reused,
                     reused.model_copy(update={"description": "tampered"}).encode()),
        ("empty_message", topics.intake(good.municipality), None, b""),
        ("empty_message", topics.intake(good.municipality), None, None),
        ("municipality_mismatch", topics.intake(other), b"k", _good(sim).encode()),
        ("__good__", topics.intake(reused.municipality), b"k", reused.encode()),
    ]


@pytest.fixture()
def sim() -> Simulator:
    return Simulator(load_territory(), seed=99, start=NOW - timedelta(hours=2))


def test_each_bad_input_is_dead_lettered_with_its_reason(sim: Simulator) -> None:
    topics = Topics("bad")
    router = Router(load_territory(), topics, pseudonym_key=b"k", dispatch_key=b"d")
    cases = catalogue(sim, topics)
    seen = DedupWindow().batch()
    # The re-used id must be routed once before its tampered copy arrives.
    good = next(c for c in cases if c[0] == "__good__")
    assert router.process(Message(good[1], 0, 0, good[2], good[3]), seen).kind == OutcomeKind.routed
    for offset, (reason, topic, key, value) in enumerate(cases, start=1):
        if reason.startswith("__"):
            continue
        outcome = router.process(Message(topic, 1, offset, key, value), seen)
        assert (outcome.kind, outcome.reason) == (OutcomeKind.dead_letter, reason), (reason, outcome)
        (out,) = outcome.outputs
        letter = DeadLetter.decode(out.value)
        assert letter.reason == reason and letter.original_value == value and letter.source_offset == offset
        assert letter.message  # a human-readable explanation, never empty


def test_catalogue_through_the_real_router_while_good_events_flow(kafka: Any, tmp_path: Path,
                                                                  sim: Simulator) -> None:
    settings = hub_settings(kafka.settings, tmp_path)
    topics = Topics(settings.topic_prefix)
    cases = catalogue(sim, topics)
    goods = [_good(sim) for _ in range(40)]
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    metrics_url = router.info("router.json")["metrics"]
    try:
        producer = Producer(settings.kafka_client_config())
        good_case = next(c for c in cases if c[0] == "__good__")
        producer.produce(good_case[1], key=good_case[2], value=good_case[3])
        producer.flush(10)
        for i, (_reason, topic, key, value) in enumerate(cases):
            if not _reason.startswith("__"):
                producer.produce(topic, key=key, value=value)
            inc = goods[i % len(goods)] if i < len(goods) else None
            if inc is not None:
                producer.produce(topics.intake(inc.municipality), key=inc.id.bytes, value=inc.encode())
        for inc in goods[len(cases):]:
            producer.produce(topics.intake(inc.municipality), key=inc.id.bytes, value=inc.encode())
        assert producer.flush(10) == 0
        expected = Counter(r for r, *_ in cases if not r.startswith("__"))
        records = read_topics(
            settings, [topics.routed, topics.dead_letter, topics.dead_letter_restricted],
            until=lambda out: sum("deadletter" in t for t, _ in out) >= sum(expected.values())
            and sum(t == topics.routed for t, _ in out) >= len(goods) + 1)
        got = Counter(d.value["reason"] for t, d in records if "deadletter" in t)
        assert got == expected
        routed = {str(d.value["id"]) for t, d in records if t == topics.routed}
        assert {str(g.id) for g in goods} <= routed  # the rest of the stream flowed
        # Intake payloads may hold a reporter's contact: their letters are on the restricted topic.
        assert all(t == topics.dead_letter_restricted for t, _ in records if "deadletter" in t)
        text = _scrape(metrics_url)
        for reason, n in expected.items():
            assert f'veille_router_dead_lettered_total{{reason="{reason}"}} {float(n)}' in text
    finally:
        assert router.stop() == 0  # still alive: nothing crashed it


def _scrape(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def test_a_lone_source_of_garbage_is_quarantined_and_committed_not_a_stop(kafka: Any, tmp_path: Path) -> None:
    """Mostly invalid, but from one source only: quarantined (range letters), committed, and
    the router stays up. Every source invalid at once still stops it: test_flooding_publisher."""
    settings = hub_settings(kafka.settings, tmp_path)
    topics = Topics(settings.topic_prefix)
    producer = Producer(settings.kafka_client_config())
    for i in range(600):
        producer.produce(topics.intake("35401"), value=b"garbage %d" % i)
    assert producer.flush(10) == 0
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    try:
        group = f"{settings.topic_prefix}-router"
        wait_for(lambda: sum(max(0, o) for o in committed_offsets(
            settings, group, [topics.intake("35401")]).values()) == 600, 90, "the garbage committed")
        dead = read_topics(settings, [topics.dead_letter_restricted], timeout=30,
                           until=lambda out: sum(d.value["range_count"] for _, d in out) >= 600)
        assert sum(d.value["range_count"] for _, d in dead) == 600
        assert {d.value["source"] for _, d in dead} == {"municipality:35401"}
        assert any(d.value["reason"] == "quarantined_source" for _, d in dead)
        assert "source municipality:35401 quarantined" in router.log()
    finally:
        assert router.stop() == 0  # still alive
