"""Third-party Kafka clients and the hub, through the real schema registry and the real broker.

confluent-kafka's own ``AvroSerializer`` publishes an incident in Confluent framing and the hub
routes it; its ``AvroDeserializer`` reads an agency's dispatch topic written by the router in
Confluent framing; the registry stopped mid-stream: cached ids keep flowing, a new id waits
(never dead-lettered) and goes through once the registry is back.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from hub_helpers import HubProcess, expected_dispatches, hub_settings

from veille.kafka import Message
from veille.producers.sdk import Publisher
from veille.producers.simulator import Simulator, span_for
from veille.schemas import codec
from veille.schemas.catalog import catalog
from veille.schemas.models import Incident
from veille.schemas.register import register_catalog, registration_plan
from veille.schemas.registry import RegistryClient, SchemaResolver
from veille.sinks.decode import decode as sink_decode
from veille.territory import load_territory
from veille.territory.topics import territory_topic_specs
from veille.topics import Topics

if TYPE_CHECKING:
    from conftest import RegistryFixture

pytestmark = pytest.mark.kafka


def _incidents(n: int, seed: int) -> list[Incident]:
    sim = Simulator(load_territory(), seed=seed, start=datetime.now(UTC) - span_for(n + 50))
    found = [e for e in sim.events(n * 20) if isinstance(e, Incident)]
    routable = [i for i in found if expected_dispatches([i])]
    assert len(routable) >= n
    return routable[:n]


def _read(settings: Any, topics: list[str], want: int, timeout: float = 60) -> list[tuple[str, bytes]]:
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"reader-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(topics)
    out: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < want and time.monotonic() < deadline:
            out += [(m.topic(), m.value()) for m in consumer.consume(100, timeout=0.5) if m.error() is None]
    finally:
        consumer.close()
    return out


def _metric(url: str, name: str) -> float | None:
    with urllib.request.urlopen(url, timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def test_third_party_clients_through_the_registry(kafka: Any, schema_registry: RegistryFixture,
                                                  tmp_path: Path) -> None:
    settings = hub_settings(kafka.settings, tmp_path, schema_registry_url=schema_registry.url,
                            framing="confluent")
    topics = Topics(settings.topic_prefix)
    client = RegistryClient(schema_registry.url, timeout=10)
    registered = register_catalog(client, registration_plan(settings, territory_topic_specs(settings)))
    pool = _incidents(12, seed=5)
    first, third = pool[0], pool[1]
    second, fourth = next((a, b) for i, a in enumerate(pool[2:]) for b in pool[3 + i:]
                          if a.municipality == b.municipality)
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    try:
        metrics_url = router.info("router.json")["metrics"]
        # --- a third-party producer: confluent-kafka's AvroSerializer, schema looked up by subject.
        sr = SchemaRegistryClient({"url": schema_registry.url})
        serializer = AvroSerializer(sr, catalog().latest("Incident").schema_json,
                                    conf={"auto.register.schemas": False, "use.latest.version": False})
        producer = Producer(settings.kafka_client_config())

        def publish(incident: Incident) -> bytes:
            topic = topics.intake(incident.municipality)
            value = serializer(incident.to_avro(), SerializationContext(topic, MessageField.VALUE))
            assert value is not None and value[0] == 0
            producer.produce(topic, key=str(incident.id).encode(), value=value)
            assert producer.flush(10) == 0
            return value

        framed = publish(first)
        subject = f"{topics.intake(first.municipality)}-value"
        assert int.from_bytes(framed[1:5], "big") == registered[subject][-1]

        # --- a third-party consumer: confluent-kafka's AvroDeserializer on the agency's topic.
        wanted = expected_dispatches([first])
        agency = next(iter(wanted))[1]
        dispatch_topic = topics.dispatch(agency)
        got = _read(settings, [dispatch_topic], 1)
        assert got, router.log()
        deserializer = AvroDeserializer(sr)
        dispatch = deserializer(got[0][1], SerializationContext(dispatch_topic, MessageField.VALUE))
        assert dispatch["event_id"] == str(first.id) and dispatch["agency_id"] == agency
        assert dispatch["payload"] == framed  # the original event, as the publisher framed it
        # The routed record is Confluent-framed too, and the sink reads it.
        routed = [v for _, v in _read(settings, [topics.routed], 1)]
        resolver = SchemaResolver(RegistryClient(schema_registry.url), topics)
        record = sink_decode(Message(topics.routed, 0, 0, None, routed[0]), resolver=resolver)
        # A routed incident reaches the sink as plain values (sinks/rows.py), Confluent-framed too.
        assert isinstance(record, dict) and record["id"] == str(first.id)

        # --- the hub's own SDK in Confluent framing (VEILLE_FRAMING=confluent).
        with Publisher(settings, client_id="test-confluent") as pub:
            pub.publish(second)
            assert not pub.flush(30).failed
            got = _read(settings, [topics.routed], 2)
            assert len(got) == 2, router.log()
            assert all(v[0] == 0 for _, v in got)

            # --- the registry stops mid-stream.
            v1_id = registered[f"{topics.intake(third.municipality)}-value"][0]
            schema_registry.registry.stop(timeout=15)
            try:
                # Ids already seen are cached on both sides (SDK, router): it keeps flowing.
                pub.publish(fourth)
                assert not pub.flush(30).failed
                got = _read(settings, [topics.routed], 3)
                assert len(got) == 3, router.log()
                # An id the router never saw: it waits for the registry, nothing dead-lettered.
                v1 = {k: v for k, v in third.to_avro().items() if k not in ("address", "attachments")}
                producer.produce(topics.intake(third.municipality), key=str(third.id).encode(),
                                 value=codec.encode_confluent("Incident", v1, v1_id, version=1))
                assert producer.flush(10) == 0
                deadline = time.monotonic() + 20
                while _metric(metrics_url, "veille_schema_registry_unreachable") != 1.0:
                    assert time.monotonic() < deadline, router.log()
                    time.sleep(0.5)
                time.sleep(2)
                assert not _read(settings, [topics.dead_letter, topics.dead_letter_restricted], 1, timeout=3)
                assert router.proc is not None and router.proc.poll() is None
            finally:
                schema_registry.registry.start(port=schema_registry.info.port, die_with_parent=True)
        got = _read(settings, [topics.routed], 4)
        assert len(got) == 4, router.log()
        assert _metric(metrics_url, "veille_schema_registry_unreachable") == 0.0
        assert not _read(settings, [topics.dead_letter, topics.dead_letter_restricted], 1, timeout=2)
        ids = set()
        for _, value in got:
            rec = sink_decode(Message(topics.routed, 0, 0, None, value), resolver=resolver)
            ids.add(rec["id"] if isinstance(rec, dict) else None)
        assert ids == {str(e.id) for e in (first, second, third, fourth)}
    finally:
        router.stop()
