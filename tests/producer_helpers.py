"""Helpers of the producer tests: an isolated topic layout on the session broker, readers."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from veille.config import Settings
from veille.producers.gate import intake_config
from veille.producers.http_intake import make_app
from veille.producers.intake_keys import KeyStore
from veille.producers.sdk import Publisher
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


# --------------------------------------------------------------------------- HTTP intake in process

Scenario = Callable[[TestClient[Any, Any]], Awaitable[None]]


def publisher_key(settings: Settings) -> tuple[KeyStore, str]:
    """A key store in the deployment's state dir with one key allowed everything the tests send."""
    keys = KeyStore(settings.state_dir / f"keys-{uuid.uuid4().hex[:6]}.json")
    _, token = keys.issue("tests", municipalities=["35401", "35402"], agencies=["sdis35"], alerts=True)
    return keys, token


def run_intake(settings: Settings, scenario: Scenario, *, token: str | None = None,
               keys: KeyStore | None = None, **options: Any) -> None:
    """The intake app in process (a key allowed everything the tests send), ``scenario`` its client."""
    if keys is None:
        keys, token = publisher_key(settings)
    config = replace(intake_config(settings, keys), ack_timeout=10, **options)
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def main() -> None:
        publisher = Publisher(settings, client_id="test-intake", known_municipalities={"35401", "35402"},
                              known_agencies={"sdis35", "pm-35401"})
        async with TestClient(TestServer(make_app(publisher, config)), headers=headers) as client:
            await scenario(client)

    asyncio.run(main())


def jsonable(data: dict[str, Any]) -> str:
    return json.dumps(data, default=str)
