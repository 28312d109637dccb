"""The store sink: routed topic → chDB/ClickHouse, as a chain of small named steps.

    poll → decode → batch (rows AND time) → write (to_rows + insert per table + dead letters),
         retried with the partitions paused → commit offsets (only after every write succeeded)

``SinkPipeline._assemble`` builds the chain (``sinks/steps.py``); this module runs the consumer
loop, decodes, and handles rebalances.

Guarantee: at-least-once delivery from Kafka + an idempotent store = each row effectively
once. Offsets are committed synchronously, after the inserts and after the dead-letter
producer confirmed delivery; a crash anywhere before that re-delivers the batch, and the
replay is absorbed by the insert dedup token, ReplacingMergeTree and idempotent views.

Revoked partitions drop the batch being retried (see ``sinks/steps.py``). The eager assignor
(librdkafka default range,roundrobin) is kept on purpose: a revoke takes every partition, so
dropping the whole batch never skips messages of a partition we keep.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka import Message as KafkaMessage

from veille.config import Settings
from veille.deadletter import DeadLetterLimit
from veille.kafka import Message, consumer_config, new_producer, producer_config
from veille.schemas.models import DeadLetter
from veille.schemas.registry import REGISTRY_WAITING, RegistryUnavailable, resolver_from_settings
from veille.sinks import metrics
from veille.sinks.batching import Batcher
from veille.sinks.decode import decode
from veille.sinks.rows import Row
from veille.sinks.steps import (
    Batching,
    CommitOffsets,
    Membership,
    RetryPolicy,
    RetryWithPause,
    Stats,
    WriteBatch,
)
from veille.sinks.store import Store
from veille.sinks.writer import Writer
from veille.topics import Topics

log = logging.getLogger(__name__)


class Fenced(RuntimeError):
    """Another member took this consumer's group.instance.id (after a coordinator failover)."""


class SinkPipeline:
    """The consumer loop. ``run`` returns on ``stop()``, on ``until()`` or after ``max_idle`` s idle."""

    def __init__(self, settings: Settings, store: Store, *, topic: str | None = None,
                 group_id: str | None = None, dead_letter_topic: str | None = None,
                 batch_rows: int | None = None, batch_seconds: float | None = None,
                 retry: RetryPolicy | None = None, extra_consumer_config: dict[str, Any] | None = None,
                 ) -> None:
        topics = Topics(settings.topic_prefix)
        self.topic = topic or topics.routed
        self.group_id = group_id or f"{settings.topic_prefix}.sink"
        self.batcher = Batcher(batch_rows or settings.sink_batch_rows,
                               settings.sink_batch_seconds if batch_seconds is None else batch_seconds)
        self.retry = retry or RetryPolicy()
        self.store = store
        self._consumer_config = {**consumer_config(settings, self.group_id), **(extra_consumer_config or {})}
        self.consumer = Consumer(self._consumer_config)
        self.producer = new_producer(producer_config(settings))
        self.writer = Writer(store, self.producer, dead_letter_topic or topics.dead_letter)
        self.dead_letter_limit = DeadLetterLimit()
        self.resolver = resolver_from_settings(settings)  # None: single-object encoding only
        self.stats = Stats()
        self._stop = threading.Event()
        self.membership = Membership(self.consumer, self._stop)
        self.batching, self._write, self._commit = self._assemble()

    def _assemble(self) -> tuple[Batching, WriteBatch, CommitOffsets]:
        """decode (``_ingest``) → batch → write, retried with the partitions paused → commit;
        each step is built before the one that hands it work."""
        commit = CommitOffsets(self.membership, self.stats)
        write = WriteBatch(self.writer, self.stats)
        retried = RetryWithPause(write, commit, self.membership, self.retry, self.stats)
        return Batching(self.batcher, retried), write, commit

    # -- control -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish: flush the current batch, commit, close (signal-safe)."""
        self._stop.set()

    def run(self, until: Callable[[], bool] | None = None, max_idle: float | None = None) -> Stats:
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        idle_since: float | None = None
        try:
            while not self._stop.is_set() and not (until and until()):
                msgs = self._next_messages()
                try:
                    for msg in msgs:
                        self._ingest(msg)
                except Fenced as exc:
                    self._rejoin(exc)
                    continue
                now = time.monotonic()
                if msgs or not self.membership.assigned:
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                if self.batcher.ready():
                    self.batching.flush()
                elif (max_idle is not None and self.batcher.empty and idle_since is not None
                      and now - idle_since >= max_idle):
                    break
            self.batching.flush(final=True)
        finally:
            self.close()
        return self.stats

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # already closed
            self.consumer.close()
        self.producer.flush(10)

    # -- poll and decode -----------------------------------------------------------------------

    def _next_messages(self) -> list[KafkaMessage]:
        if self.membership.stash:
            msgs, self.membership.stash = self.membership.stash, []
            return msgs
        timeout = min(0.2, self.batcher.remaining_seconds()) if not self.batcher.empty else 0.2
        return list(self.consumer.consume(num_messages=min(self.batcher.max_rows, 1000), timeout=timeout))

    def _rejoin(self, exc: Fenced) -> None:
        """A fenced static member's consumer is unusable, but nothing is lost: what was not
        committed is read again by a fresh consumer (same group.instance.id), and a batch
        already written is skipped by the store's dedup token."""
        log.warning("consumer fenced (%s): rejoining the group with a new consumer", exc)
        metrics.CONSUMER_REJOINS.inc()
        with contextlib.suppress(KafkaException, RuntimeError):
            self.consumer.close()
        self.batcher.take()  # not written: its messages come again from the committed offsets
        self.membership.assigned, self.membership.stash = [], []
        self.consumer = self.membership.consumer = Consumer(self._consumer_config)
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _ingest(self, msg: KafkaMessage) -> None:
        err = msg.error()
        if err is not None:
            # A fenced static member (FENCED_INSTANCE_ID after a broker restart, seen in
            # `make chaos` and in the broker-restart test) arrives as a _FATAL event whose
            # fatal() flag may not be set: that consumer is done, a new one rejoins.
            if "fenced" in (err.str() or "").lower():
                raise Fenced(err.str())
            if err.fatal() or err.code() == KafkaError._FATAL:
                raise KafkaException(err)
            log.warning("consumer error: %s", err)
            return
        source = Message.of(msg)
        item = self._decode(source)
        # Raises TooManyInvalid before the batch is written: its offsets stay uncommitted.
        self.dead_letter_limit.record(isinstance(item, DeadLetter))
        if isinstance(item, DeadLetter):
            log.warning("dead-lettering %s[%d]@%d: %s", source.topic, source.partition, source.offset,
                        item.reason)
        self.batching.submit(source, item)
        self.stats.messages += 1

    def _decode(self, source: Message) -> Row | DeadLetter:
        """decode(); while the registry is unreachable, retried with backoff (never dead-lettered)."""
        try:
            return decode(source, resolver=self.resolver)
        except RegistryUnavailable as first:
            exc, attempt = first, 0
        REGISTRY_WAITING.set(1)
        try:
            while True:
                attempt += 1
                log.warning("%s[%d]@%d: %s (attempt %d)", source.topic, source.partition, source.offset,
                            exc, attempt)
                if self._stop.is_set():
                    raise exc  # stopping: nothing of the batch is committed, it is re-read later
                self.membership.wait(self.retry.delay(attempt))  # polls: the consumer stays in its group
                try:
                    return decode(source, resolver=self.resolver)
                except RegistryUnavailable as again:
                    exc = again
        finally:
            REGISTRY_WAITING.set(0)

    # -- rebalance -----------------------------------------------------------------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.membership.assigned = list(partitions)
        log.info("assigned %s", [(tp.topic, tp.partition) for tp in partitions])

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("revoked %s", [(tp.topic, tp.partition) for tp in partitions])
        m = self.membership
        m.assigned = []
        m.stash.clear()  # their offsets are uncommitted: the next owner reads them again
        if m.writing:
            m.revoked_while_writing = True
            return
        batch = self.batcher.take()
        if batch is None:
            return
        # Best effort: store and commit what we have now, else drop it (it will be re-read).
        try:
            self._write(batch)
        except Exception as exc:
            log.warning("dropping uncommitted batch on revoke: %s", exc)
            self.stats.batches_dropped += 1
            return
        self._commit.submit(batch)
