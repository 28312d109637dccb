"""Kafka rates on the local broker: raw confluent-kafka (the reference) and the SDK's Publisher.

The raw producer uses exactly the SDK's librdkafka settings (``publisher_config``: idempotent,
acks=all, linger, zstd) and the same Avro payloads, so the difference between the two rows
is the SDK's Python work (validation pass-through, topic/key choice, encoding, bookkeeping).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from veille.config import Settings
from veille.producers.sdk import Publisher, publisher_config
from veille.schemas.models import Incident

_POLL_EVERY = 10_000


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


def create_topic(settings: Settings, name: str, partitions: int) -> None:
    admin = AdminClient(settings.kafka_client_config())
    futures = admin.create_topics([NewTopic(name, partitions, 1)])
    for fut in futures.values():
        fut.result(30)


def raw_produce(settings: Settings, topic: str, payloads: Sequence[bytes], n: int) -> Rate:
    """``n`` messages (payloads cycled, uuid keys) → acknowledged messages per second."""
    keys = [str(uuid.uuid4()).encode() for _ in range(min(n, 20_000))]
    np, nk = len(payloads), len(keys)
    return _produce_all(settings, topic, n, lambda i: (keys[i % nk], payloads[i % np]), "raw produce")


def encode_and_produce(settings: Settings, topic: str, incidents: Sequence[Incident]) -> Rate:
    """Each model encoded (``Incident.encode``) then produced, nothing else: what any Python
    publisher of these models pays at least, the SDK's bookkeeping left out."""
    return _produce_all(settings, topic, len(incidents),
                        lambda i: (str(incidents[i].id).encode(), incidents[i].encode()), "encode + produce")


def _produce_all(settings: Settings, topic: str, n: int, item: Callable[[int], tuple[bytes, bytes]],
                 what: str) -> Rate:
    acked = 0
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        nonlocal acked
        if err is None:
            acked += 1
        else:
            errors.append(err)

    producer = Producer(publisher_config(settings, "bench-raw"))
    key, value = item(0)
    producer.produce(topic, value, key, on_delivery=on_delivery)  # connect + producer id
    producer.flush(30)
    acked = 0
    start = time.perf_counter()
    for i in range(n):
        key, value = item(i)
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        if i % _POLL_EVERY == 0:
            producer.poll(0)
    left = producer.flush(120)
    elapsed = time.perf_counter() - start
    if left or errors or acked != n:
        raise RuntimeError(f"{what}: {acked} of {n} acknowledged, {left} pending, errors {errors[:3]}")
    return Rate(acked, elapsed)


def raw_consume(settings: Settings, topic: str, n: int, timeout: float = 120) -> Rate:
    """Read ``n`` messages from the start of ``topic``: rate from the first message to the n-th."""
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got = 0
    first: float | None = None
    deadline = time.monotonic() + timeout
    try:
        while got < n and time.monotonic() < deadline:
            msgs = consumer.consume(10_000, timeout=1.0)
            if msgs and first is None:
                first = time.perf_counter()
            for msg in msgs:
                if msg.error() is None:
                    got += 1
        end = time.perf_counter()
    finally:
        consumer.close()
    if got < n or first is None:
        raise RuntimeError(f"raw consume: {got} of {n} messages within {timeout:.0f}s")
    return Rate(got, end - first)


def sdk_publish(settings: Settings, incidents: Sequence[Any], *, compression: str = "zstd",
                extra_config: dict[str, Any] | None = None) -> Rate:
    """``Publisher.publish_many`` of models (or dicts), then ``flush``: acknowledged incidents per second."""
    with Publisher(settings, client_id="bench-sdk", compression=compression, track_ids=False,
                   extra_config=extra_config) as publisher:
        publisher.publish_incident(incidents[0])  # connect + producer id before timing
        publisher.flush(30)
        start = time.perf_counter()
        outcome = publisher.publish_many(incidents[1:], record_type="Incident")
        summary = publisher.flush(120)
        elapsed = time.perf_counter() - start
        publisher.poll(1.1)  # lets a statistics callback see the final counters
    acked = summary.acknowledged - 1
    if outcome.rejected or summary.failed or acked != len(incidents) - 1:
        raise RuntimeError(f"SDK publish: {acked} of {len(incidents) - 1} acknowledged, "
                           f"{len(outcome.rejected)} rejected, failed {summary.failed[:3]}")
    return Rate(acked, elapsed)
