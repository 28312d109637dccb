"""The router's one Kafka producer: produce a batch of outputs and wait for every report.

aiokafka sends one awaited future per message (~190 µs each, measured); an idempotent
confluent-kafka producer batches them and reports every delivery, so a whole batch of
outputs costs a few milliseconds. What a refusal means (permanent or transient) is sorted
by :func:`veille.kafka.produce_and_confirm`; ``streams/batch.py`` decides what to do.
"""

from __future__ import annotations

from collections.abc import Sequence

from veille.config import Settings
from veille.kafka import Confirmation, Output, new_producer, produce_and_confirm, producer_config

# The producer's own cap; topics' max.message.bytes are below it (veille.topics).
MAX_MESSAGE_BYTES = 1_000_000


class OutputSender:
    """Owns the router's producer: idempotent, acks=all, every delivery report checked."""

    def __init__(self, settings: Settings, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.producer = new_producer(producer_config(settings, **{
            "client.id": f"{settings.topic_prefix}-router",
            "linger.ms": 5,
            "compression.type": "zstd",
            "message.max.bytes": MAX_MESSAGE_BYTES,
            "delivery.timeout.ms": int(timeout * 1000),
        }))

    def send(self, outputs: Sequence[tuple[int, Output]]) -> Confirmation:
        """Blocking: produce every (owner, output) and wait for its report."""
        return produce_and_confirm(self.producer, outputs, self.timeout)

    def close(self) -> None:
        self.producer.flush(self.timeout)
