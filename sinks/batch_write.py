"""Writing one batch: every table of the store, then the batch's dead letters to Kafka."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from confluent_kafka import Producer

from veille.kafka import Output, produce_and_confirm
from veille.schemas.models import DeadLetter
from veille.sinks import metrics
from veille.sinks.batching import Batch
from veille.sinks.rows import to_rows
from veille.sinks.store import Store


class DeliveryFailed(RuntimeError):
    pass


class BatchWrite:
    """Writes one batch: every table (dedup token per table) and the batch's dead letters."""

    def __init__(self, store: Store, producer: Producer | None, dead_letter_topic: str,
                 flush_timeout: float = 30.0) -> None:
        self.store = store
        self.producer = producer
        self.dead_letter_topic = dead_letter_topic
        self.flush_timeout = flush_timeout

    def write(self, batch: Batch) -> dict[str, int]:
        stored_at = datetime.now(UTC)
        written: dict[str, int] = {}
        for table, rows in to_rows(batch.records, stored_at).items():
            if rows.num_rows == 0:
                continue
            t0 = time.perf_counter()
            self.store.insert(table, rows, batch.dedup_token(table))
            metrics.INSERT_SECONDS.labels(table).observe(time.perf_counter() - t0)
            written[table] = rows.num_rows
        if batch.dead_letters:
            self._dead_letter(batch.dead_letters)
        return written

    def _dead_letter(self, letters: list[DeadLetter]) -> None:
        if self.producer is None:
            raise DeliveryFailed("no dead-letter producer configured")
        outputs = [(i, Output(self.dead_letter_topic, letter.original_key, letter.encode()))
                   for i, letter in enumerate(letters)]
        # Committing past a dead-lettered message is only safe once its letter is durable.
        result = produce_and_confirm(self.producer, outputs, self.flush_timeout)
        if not result.ok:
            errors = [*result.permanent.values(), *result.transient]
            raise DeliveryFailed(f"dead letters not delivered: errors {errors[:3]}")
