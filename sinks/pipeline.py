"""The store sink: the routed and delivery topics → chDB/ClickHouse, as a chain of small named steps.

    decode → batch (rows AND time) → write (to_rows + insert per table + dead letters),
           retried while the partitions are paused → commit offsets (only after the write)

``SinkPipeline._assemble`` builds the chain (``sinks/steps.py``) for each assignment; the
consumer loop, rebalances, backpressure and a fenced static member are the consumer runtime's
(``veille/consumer/runner.py``), shared with every other consumer of the hub.

Guarantee: at-least-once delivery from Kafka + an idempotent store = each row effectively
once. Offsets are committed synchronously, after the inserts and after the dead-letter
producer confirmed delivery; a crash anywhere before that re-delivers the batch, and the
replay is absorbed by the insert dedup token, ReplacingMergeTree and idempotent views.
On revocation the chain is joined at once: a batch that writes at the first attempt is
committed, one that does not is dropped uncommitted (the next owner reads it again).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from veille.config import Settings
from veille.consumer import Assignment, Offsets, ProcessingStep, StreamRunner
from veille.deadletter import DeadLetterLimit
from veille.kafka import Message, consumer_config, new_producer, producer_config
from veille.schemas.registry import resolver_from_settings
from veille.sinks import metrics
from veille.sinks.batch_write import BatchWrite
from veille.sinks.batching import Batcher
from veille.sinks.steps import Batching, CommitOffsets, Decode, RetryPolicy, Stats, WriteWithRetry
from veille.sinks.store import Store
from veille.topics import PCS_TYPES, ROUTED_TYPES, Topics


class SinkPipeline:
    """The sink's consumer. ``run`` returns on ``stop()``, on ``until()`` or after ``max_idle`` s idle.

    It reads ``<prefix>.routed`` (routed records) and ``<prefix>.delivery`` (delivery receipts)
    by default, in one consumer group: a batch may hold both, its offsets commit together after
    every table was written. ``topics`` replaces them; a topic that is not one of the hub's is
    read as routed records."""

    def __init__(self, settings: Settings, store: Store, *, topics: Sequence[str] | None = None,
                 group_id: str | None = None, dead_letter_topic: str | None = None,
                 batch_rows: int | None = None, batch_seconds: float | None = None,
                 retry: RetryPolicy | None = None, extra_consumer_config: dict[str, Any] | None = None,
                 ) -> None:
        names = Topics(settings.topic_prefix)
        self.topics = list(topics or (names.routed, names.delivery, names.pcs_cascade))
        self.expect = {t: PCS_TYPES if t == names.pcs_cascade else names.record_types(t) or ROUTED_TYPES
                       for t in self.topics}
        self.group_id = group_id or f"{settings.topic_prefix}.sink"
        self.batch_rows = batch_rows or settings.sink_batch_rows
        self.batch_seconds = settings.sink_batch_seconds if batch_seconds is None else batch_seconds
        self.retry = retry or RetryPolicy()
        self.store = store
        self.producer = new_producer(producer_config(settings))
        self.write = BatchWrite(store, self.producer, dead_letter_topic or names.dead_letter)
        self.resolver = resolver_from_settings(settings)  # None: single-object encoding only
        self.stats = Stats()
        self.dead_letter_limit = DeadLetterLimit()  # for the sink's life, across rebalances
        self.runner = StreamRunner(
            {**consumer_config(settings, self.group_id), **(extra_consumer_config or {})},
            self.topics, self._assemble, lag=metrics.CONSUMER_LAG, on_rejoin=metrics.CONSUMER_REJOINS.inc,
            max_poll=min(self.batch_rows, 1000),
            # A batch closes on time in the chain's poll: poll often enough for its deadline.
            poll_timeout=min(0.2, max(0.02, self.batch_seconds / 4)))

    def _assemble(self, offsets: Offsets, _assignment: Assignment) -> ProcessingStep[Message]:
        """decode → batch → write, retried → commit; each step built before the one that feeds it."""
        commit = CommitOffsets(offsets, self.stats)
        write = WriteWithRetry(self.write, commit, offsets, self.retry, self.stats)
        batching = Batching(Batcher(self.batch_rows, self.batch_seconds), write)
        return Decode(batching, self.resolver, self.retry, self.stats, self.dead_letter_limit, self.expect)

    def stop(self) -> None:
        """Ask the loop to finish: flush the current batch, commit, close (signal-safe)."""
        self.runner.stop()

    def run(self, until: Callable[[], bool] | None = None, max_idle: float | None = None) -> Stats:
        try:
            self.runner.run(until, max_idle)
        finally:
            self.producer.flush(10)
        return self.stats
