"""The store sink: routed topic → chDB/ClickHouse, as a small pipeline of named steps.

    poll → decode → Batcher (rows AND time) → write (to_rows + insert per table + dead letters)
         → commit offsets (only after every write of the batch succeeded)

Guarantee: at-least-once delivery from Kafka + an idempotent store = each row effectively
once. Offsets are committed synchronously, after the inserts and after the dead-letter
producer confirmed delivery; a crash anywhere before that re-delivers the batch, and the
replay is absorbed by the insert dedup token, ReplacingMergeTree and idempotent views.

Write failures: the batch is retried with capped exponential backoff, never skipped. While
retrying, every assigned partition is PAUSED and the consumer keeps calling ``poll`` so it
stays in its group (max.poll.interval.ms); anything poll still hands over is stashed and
processed after the batch. If the partitions are revoked meanwhile, the batch is dropped
(its offsets were not committed: the new owner re-reads it). The eager assignor (librdkafka
default range,roundrobin) is kept on purpose: a revoke takes every partition, so dropping
the whole batch never skips messages of a partition we keep.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka import Message as KafkaMessage
from pydantic import ValidationError

from veille.config import Settings
from veille.deadletter import DeadLetterLimit, make_dead_letter
from veille.kafka import (
    Message,
    Output,
    committed_lag,
    consumer_config,
    new_producer,
    produce_and_confirm,
    producer_config,
)
from veille.schemas import codec
from veille.schemas.models import MODELS, DeadLetter, Record, RoutedIncident
from veille.schemas.registry import REGISTRY_WAITING, RegistryUnavailable, resolver_from_settings
from veille.sinks import metrics
from veille.sinks.rows import to_rows
from veille.sinks.store import Store
from veille.topics import ROUTED_TYPES, Topics

log = logging.getLogger(__name__)

COMPONENT = "sink"
# DateTime64(3) columns hold 1900..2299; before the Unix epoch is a bug upstream anyway.
STORE_TIME_RANGE = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2262, 1, 1, tzinfo=UTC))


def _out_of_store_range(record: Record) -> str | None:
    """A time the store cannot hold would fail every insert of its batch, forever: refuse it here."""
    for name, value in record:
        if isinstance(value, datetime) and not STORE_TIME_RANGE[0] <= value < STORE_TIME_RANGE[1]:
            low, high = STORE_TIME_RANGE
            return f"{name}={value.isoformat()} is outside {low.year}..{high.year}"
    return None


def decode(msg: Message, now: datetime | None = None,
           resolver: codec.Resolver | None = None) -> Record | DeadLetter:
    """A routed record, or the dead letter explaining why the message is not one.

    Raises ``RegistryUnavailable`` (a Confluent schema id not cached, registry unreachable).
    """
    try:
        decoded = codec.decode(msg.value, expect=ROUTED_TYPES, resolver=resolver)
        record = MODELS[decoded.record_type].from_avro(decoded.value)
        problem = _out_of_store_range(record)
        if problem is None:
            return record
        reason, detail = "out_of_range", problem
    except codec.DecodeError as exc:
        reason, detail = exc.reason, exc.detail
    except ValidationError as exc:
        reason, detail = "validation_error", str(exc)
    return make_dead_letter(component=COMPONENT, reason=reason, detail=detail, topic=msg.topic,
                            partition=msg.partition, offset=msg.offset, key=msg.key, value=msg.value,
                            failed_at=now)


@dataclass
class Batch:
    """Decoded records and dead letters of consecutive messages, with their offset ranges."""

    started: float
    records: list[Record] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    ranges: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    messages: int = 0

    def add(self, msg: Message, item: Record | DeadLetter) -> None:
        if isinstance(item, DeadLetter):
            self.dead_letters.append(item)
        else:
            self.records.append(item)
        key = (msg.topic, msg.partition)
        first, _ = self.ranges.get(key, (msg.offset, msg.offset))
        self.ranges[key] = (first, msg.offset)
        self.messages += 1

    def dedup_token(self, table: str) -> str:
        """Same messages → same token: a replayed batch is skipped by the store."""
        spans = ",".join(f"{t}:{p}:{first}-{last}"
                         for (t, p), (first, last) in sorted(self.ranges.items()))
        return f"{table}|{spans}"

    def commit_offsets(self) -> list[TopicPartition]:
        return [TopicPartition(t, p, last + 1) for (t, p), (_, last) in sorted(self.ranges.items())]


class Batcher:
    """Accumulates messages until ``max_rows`` messages or ``max_seconds`` since the first one."""

    def __init__(self, max_rows: int, max_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.max_rows = max(1, max_rows)
        self.max_seconds = max_seconds
        self._clock = clock
        self.batch: Batch | None = None

    def add(self, msg: Message, item: Record | DeadLetter) -> None:
        if self.batch is None:
            self.batch = Batch(started=self._clock())
        self.batch.add(msg, item)

    @property
    def empty(self) -> bool:
        return self.batch is None

    def ready(self) -> bool:
        b = self.batch
        return b is not None and (b.messages >= self.max_rows
                                  or self._clock() - b.started >= self.max_seconds)

    def remaining_seconds(self) -> float:
        return self.max_seconds if self.batch is None else \
            max(0.0, self.max_seconds - (self._clock() - self.batch.started))

    def take(self) -> Batch | None:
        batch, self.batch = self.batch, None
        return batch


class DeliveryFailed(RuntimeError):
    pass


class Writer:
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


@dataclass(frozen=True)
class RetryPolicy:
    initial: float = 0.2
    multiplier: float = 2.0
    maximum: float = 30.0

    def delay(self, attempt: int) -> float:
        return float(min(self.maximum, self.initial * self.multiplier ** max(0, attempt - 1)))


@dataclass
class Stats:
    messages: int = 0
    batches_committed: int = 0
    rows_written: int = 0
    dead_lettered: int = 0
    write_failures: int = 0
    batches_dropped: int = 0


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
        self.consumer = Consumer({**consumer_config(settings, self.group_id),
                                  **(extra_consumer_config or {})})
        self.producer = new_producer(producer_config(settings))
        self.writer = Writer(store, self.producer, dead_letter_topic or topics.dead_letter)
        self.dead_letter_limit = DeadLetterLimit()
        self.resolver = resolver_from_settings(settings)  # None: single-object encoding only
        self.stats = Stats()
        self._stop = threading.Event()
        self._stash: list[KafkaMessage] = []
        self._assigned: list[TopicPartition] = []
        self._writing = False
        self._revoked_while_writing = False

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
                for msg in msgs:
                    self._ingest(msg)
                now = time.monotonic()
                if msgs or not self._assigned:
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                if self.batcher.ready():
                    self._flush()
                elif (max_idle is not None and self.batcher.empty and idle_since is not None
                      and now - idle_since >= max_idle):
                    break
            self._flush(final=True)
        finally:
            self.close()
        return self.stats

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # already closed
            self.consumer.close()
        self.producer.flush(10)

    # -- steps ---------------------------------------------------------------------------------

    def _next_messages(self) -> list[KafkaMessage]:
        if self._stash:
            msgs, self._stash = self._stash, []
            return msgs
        timeout = min(0.2, self.batcher.remaining_seconds()) if not self.batcher.empty else 0.2
        return list(self.consumer.consume(num_messages=min(self.batcher.max_rows, 1000), timeout=timeout))

    def _ingest(self, msg: KafkaMessage) -> None:
        err = msg.error()
        if err is not None:
            # A fenced static member (FENCED_INSTANCE_ID after a broker restart, seen in
            # `make chaos`) arrives as a _FATAL event whose fatal() flag is not set: either
            # way the consumer is unusable, so stop and let the supervisor start a fresh one.
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
        self.batcher.add(source, item)
        self.stats.messages += 1

    def _decode(self, source: Message) -> Record | DeadLetter:
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
                self._wait(self.retry.delay(attempt))  # polls: the consumer stays in its group
                try:
                    return decode(source, resolver=self.resolver)
                except RegistryUnavailable as again:
                    exc = again
        finally:
            REGISTRY_WAITING.set(0)

    def _flush(self, final: bool = False) -> None:
        batch = self.batcher.take()
        if batch is None:
            return
        if self._write_with_retry(batch, give_up=final):
            self._commit(batch)

    def _write_with_retry(self, batch: Batch, give_up: bool) -> bool:
        """True once written; False if the batch was dropped (revoked, or stopping after failures)."""
        attempt = 0
        self._writing, self._revoked_while_writing = True, False
        paused: list[TopicPartition] = []
        try:
            while True:
                attempt += 1
                try:
                    written = self.writer.write(batch)
                    self._record_written(batch, written)
                    return True
                except Exception as exc:  # every failure of the store or the DLQ is retried
                    metrics.WRITE_FAILURES.inc()
                    self.stats.write_failures += 1
                    log.warning("writing batch %s failed (attempt %d): %s",
                                batch.dedup_token("*"), attempt, exc)
                if give_up and (self._stop.is_set() or attempt >= 3):
                    log.error("stopping with an unwritten batch: it will be re-read at next start")
                    self.stats.batches_dropped += 1
                    return False
                if not paused and self._assigned:
                    paused = list(self._assigned)
                    self.consumer.pause(paused)
                if not self._wait(self.retry.delay(attempt)):
                    self.stats.batches_dropped += 1
                    return False
        finally:
            self._writing = False
            if paused and not self._revoked_while_writing:
                self.consumer.resume(paused)

    def _wait(self, seconds: float) -> bool:
        """Back off while keeping group membership alive; False if the batch must be dropped."""
        self._update_lag()
        deadline = time.monotonic() + seconds
        while True:
            if self._revoked_while_writing:
                log.warning("partitions revoked during write retries: dropping the batch")
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if self._stop.is_set() and left > 0.5:
                deadline = time.monotonic() + 0.5  # stopping: one last quick attempt
            msg = self.consumer.poll(min(left, 0.5))
            if msg is not None:
                self._stash.append(msg)

    def _record_written(self, batch: Batch, written: dict[str, int]) -> None:
        metrics.BATCH_ROWS.observe(batch.messages)
        for table, n in written.items():
            metrics.ROWS_WRITTEN.labels(table).inc(n)
            self.stats.rows_written += n
        for letter in batch.dead_letters:
            metrics.DEAD_LETTERED.labels(letter.reason).inc()
        self.stats.dead_lettered += len(batch.dead_letters)
        now = datetime.now(UTC)
        for rec in batch.records:
            if isinstance(rec, RoutedIncident):
                metrics.END_TO_END.observe(max(0.0, (now - rec.reported_at).total_seconds()))

    def _commit(self, batch: Batch) -> None:
        try:
            self.consumer.commit(offsets=batch.commit_offsets(), asynchronous=False)
        except KafkaException as exc:
            # Rows are stored; a lost commit only means a replay, which the store absorbs.
            log.warning("offset commit failed (batch will be replayed, harmlessly): %s", exc)
            return
        self.stats.batches_committed += 1
        metrics.LAST_COMMIT.set_to_current_time()
        self._update_lag()

    def _update_lag(self) -> None:
        """End offsets minus *committed* offsets, asked of the broker: while writes fail
        nothing is committed, so the backlog shows (the consumer's own position would not)."""
        if not self._assigned:
            return
        try:
            lags = committed_lag(self.consumer, self._assigned, timeout=5)
        except KafkaException:
            return
        for (topic, partition), lag in lags.items():
            metrics.CONSUMER_LAG.labels(topic, str(partition)).set(lag)

    # -- rebalance -----------------------------------------------------------------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned = list(partitions)
        log.info("assigned %s", [(tp.topic, tp.partition) for tp in partitions])

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("revoked %s", [(tp.topic, tp.partition) for tp in partitions])
        self._assigned = []
        self._stash.clear()  # their offsets are uncommitted: the next owner reads them again
        if self._writing:
            self._revoked_while_writing = True
            return
        batch = self.batcher.take()
        if batch is None:
            return
        # Best effort: store and commit what we have now, else drop it (it will be re-read).
        try:
            written = self.writer.write(batch)
        except Exception as exc:
            log.warning("dropping uncommitted batch on revoke: %s", exc)
            self.stats.batches_dropped += 1
            return
        self._record_written(batch, written)
        self._commit(batch)
