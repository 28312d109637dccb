"""The sink's steps after decoding, each handing its result to the next:

    Batching (rows | time) → RetryWithPause(WriteBatch) → CommitOffsets

``SinkPipeline._assemble`` chains them. Write failures: the batch is retried with capped
exponential backoff, never skipped. While retrying, every assigned partition is PAUSED and the
consumer keeps calling ``poll`` so it stays in its group (max.poll.interval.ms); anything poll
still hands over is stashed and processed after the batch. If the partitions are revoked
meanwhile, the batch is dropped (its offsets were not committed: the new owner re-reads it).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka import Message as KafkaMessage

from veille.kafka import Message, committed_lag
from veille.schemas.models import DeadLetter, RoutedIncident
from veille.sinks import metrics
from veille.sinks.batching import Batch, Batcher
from veille.sinks.rows import Row, ms
from veille.sinks.writer import Writer

log = logging.getLogger("veille.sinks.pipeline")


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


@dataclass
class Membership:
    """What the consumer holds, shared by the rebalance callbacks and the steps."""

    consumer: Consumer
    stop: threading.Event
    assigned: list[TopicPartition] = field(default_factory=list)
    stash: list[KafkaMessage] = field(default_factory=list)  # polled while paused, for later
    writing: bool = False
    revoked_while_writing: bool = False

    def update_lag(self) -> None:
        """End offsets minus *committed* offsets, asked of the broker: while writes fail
        nothing is committed, so the backlog shows (the consumer's own position would not)."""
        if not self.assigned:
            return
        try:
            lags = committed_lag(self.consumer, self.assigned, timeout=5)
        except KafkaException:
            return
        for (topic, partition), lag in lags.items():
            metrics.CONSUMER_LAG.labels(topic, str(partition)).set(lag)

    def wait(self, seconds: float) -> bool:
        """Back off while keeping group membership alive; False if the batch must be dropped."""
        self.update_lag()
        deadline = time.monotonic() + seconds
        while True:
            if self.revoked_while_writing:
                log.warning("partitions revoked during write retries: dropping the batch")
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if self.stop.is_set() and left > 0.5:
                deadline = time.monotonic() + 0.5  # stopping: one last quick attempt
            msg = self.consumer.poll(min(left, 0.5))
            if msg is not None:
                self.stash.append(msg)


class CommitOffsets:
    """Commits a written batch's offsets, synchronously."""

    def __init__(self, membership: Membership, stats: Stats) -> None:
        self.membership = membership
        self.stats = stats

    def submit(self, batch: Batch) -> None:
        try:
            self.membership.consumer.commit(offsets=batch.commit_offsets(), asynchronous=False)
        except KafkaException as exc:
            # Rows are stored; a lost commit only means a replay, which the store absorbs.
            log.warning("offset commit failed (batch will be replayed, harmlessly): %s", exc)
            return
        self.stats.batches_committed += 1
        metrics.LAST_COMMIT.set_to_current_time()
        self.membership.update_lag()


class WriteBatch:
    """Writes a batch (store, then dead letters) and counts what was written."""

    def __init__(self, writer: Writer, stats: Stats) -> None:
        self.writer = writer
        self.stats = stats

    def __call__(self, batch: Batch) -> None:
        written = self.writer.write(batch)
        metrics.BATCH_ROWS.observe(batch.messages)
        for table, n in written.items():
            metrics.ROWS_WRITTEN.labels(table).inc(n)
            self.stats.rows_written += n
        for letter in batch.dead_letters:
            metrics.DEAD_LETTERED.labels(letter.reason).inc()
        self.stats.dead_lettered += len(batch.dead_letters)
        now_ms = time.time() * 1000
        for rec in batch.records:
            if isinstance(rec, dict):  # a plain routed incident (sinks/rows.py)
                metrics.END_TO_END.observe(max(0.0, (now_ms - rec["reported_at"]) / 1000))
            elif isinstance(rec, RoutedIncident):
                metrics.END_TO_END.observe(max(0.0, (now_ms - ms(rec.reported_at)) / 1000))


class RetryWithPause:
    """``write`` a batch until it succeeds, pausing the partitions meanwhile; then ``next``."""

    def __init__(self, write: WriteBatch, next_step: CommitOffsets, membership: Membership,
                 retry: RetryPolicy, stats: Stats) -> None:
        self.write = write
        self.next = next_step
        self.membership = membership
        self.retry = retry
        self.stats = stats

    def submit(self, batch: Batch, final: bool = False) -> None:
        if self._write(batch, give_up=final):
            self.next.submit(batch)

    def _write(self, batch: Batch, give_up: bool) -> bool:
        """True once written; False if the batch was dropped (revoked, or stopping after failures)."""
        m = self.membership
        attempt = 0
        m.writing, m.revoked_while_writing = True, False
        paused: list[TopicPartition] = []
        try:
            while True:
                attempt += 1
                try:
                    self.write(batch)
                    return True
                except Exception as exc:  # every failure of the store or the DLQ is retried
                    metrics.WRITE_FAILURES.inc()
                    self.stats.write_failures += 1
                    log.warning("writing batch %s failed (attempt %d): %s",
                                batch.dedup_token("*"), attempt, exc)
                if give_up and (m.stop.is_set() or attempt >= 3):
                    log.error("stopping with an unwritten batch: it will be re-read at next start")
                    self.stats.batches_dropped += 1
                    return False
                if not paused and m.assigned:
                    paused = list(m.assigned)
                    m.consumer.pause(paused)
                if not m.wait(self.retry.delay(attempt)):
                    self.stats.batches_dropped += 1
                    return False
        finally:
            m.writing = False
            if paused and not m.revoked_while_writing:
                m.consumer.resume(paused)


class Batching:
    """Adds decoded messages to the batch; hands it on when full or old enough."""

    def __init__(self, batcher: Batcher, next_step: RetryWithPause) -> None:
        self.batcher = batcher
        self.next = next_step

    def submit(self, msg: Message, item: Row | DeadLetter) -> None:
        self.batcher.add(msg, item)

    def flush(self, final: bool = False) -> None:
        batch = self.batcher.take()
        if batch is not None:
            self.next.submit(batch, final)


__all__ = ["Batching", "CommitOffsets", "Membership", "RetryPolicy", "RetryWithPause", "Stats",
           "WriteBatch"]
