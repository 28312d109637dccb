"""Helpers of the producer tests: an isolated topic layout on the session broker, readers."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from veille.config import Settings
from veille.topics import ensure_topics, topic_specs

# The example territory's municipalities (veille/territories/example).
MUNICIPALITIES = ("35401", "35402", "35403", "35404", "35405", "35406")


def isolated_settings(base: Settings, label: str, **updates: Any) -> Settings:
    """Settings with a unique topic prefix, its topics created on the broker."""
    settings = base.model_copy(update={"topic_prefix": f"t{label}{uuid.uuid4().hex[:8]}", **updates})
    ensure_topics(AdminClient(settings.kafka_client_config()), topic_specs(settings, MUNICIPALITIES, []))
    return settings


def incident(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    data: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "municipality": "35401",
        "category": "flood",
        "severity": "severe",
        "location": {"lat": 48.12, "lon": -1.7},
        "occurred_at": now - timedelta(minutes=5),
        "reported_at": now,
        "channel": "app",
        "description": "Rue inondée",
    }
    data.update(overrides)
    return data


def alert(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "identifier": f"urn:oid:2.49.0.1.250.0.{uuid.uuid4().int % 10**9}",
        "sender": "prefecture35@interieur.gouv.fr",
        "sent": datetime.now(UTC),
        "status": "Actual",
        "msg_type": "Alert",
        "scope": "Public",
        "infos": [{
            "category": ["Met"],
            "event": "Orages",
            "urgency": "Immediate",
            "severity": "Severe",
            "certainty": "Likely",
            "headline": "Vigilance orange orages",
            "areas": [{"area_desc": "Val de Veille", "geocodes": [{"value_name": "INSEE", "value": "35401"}],
                       "circles": [{"center": {"lat": 48.1, "lon": -1.7}, "radius_km": 5}]}],
        }],
    }
    data.update(overrides)
    return data


def status(incident_id: str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"id": str(uuid.uuid4()), "incident_id": incident_id, "agency_id": "sdis35",
                            "dispatch_id": str(uuid.uuid4()), "status": "dispatched", "at": datetime.now(UTC),
                            "note": None}
    data.update(overrides)
    return data


def consume(settings: Settings, topics: list[str], count: int, timeout: float = 15.0) -> list[Message]:
    """The first ``count`` messages of ``topics`` (all partitions, from the beginning)."""
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"test-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(timeout=10).topics
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in meta[t].partitions])
        out: list[Message] = []
        deadline = datetime.now(UTC) + timedelta(seconds=timeout)
        while len(out) < count and datetime.now(UTC) < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            out.append(msg)
        return out
    finally:
        consumer.close()


def _high_watermark(consumer: Consumer, tp: TopicPartition, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return int(consumer.get_watermark_offsets(tp, timeout=timeout)[1])
        except KafkaException:  # a just-created topic may not have its leader yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def message_count(settings: Settings, topics: list[str]) -> int:
    """Messages ever written to ``topics`` (sum of high watermarks): 0 means nothing reached Kafka."""
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"test-{uuid.uuid4()}"})
    try:
        meta = consumer.list_topics(timeout=10).topics
        total = 0
        for t in topics:
            for p in meta[t].partitions:
                total += _high_watermark(consumer, TopicPartition(t, p))
        return total
    finally:
        consumer.close()
