"""The sink's steps, each a ``ProcessingStep`` (``veille/consumer/steps.py``) handing on to the next:

    Decode → Batching (rows | time) → WriteWithRetry (store, then dead letters) → CommitOffsets

``sinks/pipeline.py`` assembles them. A write that fails is retried with capped exponential
backoff, never skipped: the failing batch stays in ``WriteWithRetry``, which refuses the next
one (``MessageRejected``) until it is written; ``Batching`` then holds the next batch and
refuses messages in turn, and the runner pauses the partitions, keeping the consumer in its
group. Offsets are committed only after the write. A schema registry that cannot be reached
is waited for the same way (``Decode`` refuses the message until the backoff elapsed): never a
dead letter, the message is fine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from veille.consumer import LastStep, MessageRejected, Offsets, ProcessingStep
from veille.deadletter import DeadLetterLimit
from veille.kafka import Message
from veille.schemas import codec
from veille.schemas.models import DeadLetter, RoutedIncident
from veille.schemas.registry import REGISTRY_WAITING, RegistryUnavailable
from veille.sinks import metrics
from veille.sinks.batch_write import BatchWrite
from veille.sinks.batching import Batch, Batcher
from veille.sinks.decode import decode
from veille.sinks.rows import Row, ms
from veille.topics import ROUTED_TYPES

log = logging.getLogger("veille.sinks.steps")


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
class Decoded:
    message: Message
    item: Row | DeadLetter


class CommitOffsets(LastStep[Batch]):
    """Commits a written batch's offsets, synchronously (the last step)."""

    def __init__(self, offsets: Offsets, stats: Stats) -> None:
        self.offsets = offsets
        self.stats = stats

    def submit(self, batch: Batch) -> None:
        if self.offsets.commit(batch.commit_offsets()):
            self.stats.batches_committed += 1
            metrics.LAST_COMMIT.set_to_current_time()


class WriteWithRetry:
    """Writes a batch (store, then dead letters); retried until written, then handed on."""

    def __init__(self, write: BatchWrite, next_step: ProcessingStep[Batch], offsets: Offsets,
                 retry: RetryPolicy, stats: Stats) -> None:
        self.write = write
        self.next_step = next_step
        self.offsets = offsets
        self.retry = retry
        self.stats = stats
        self._failing: Batch | None = None
        self._attempts = 0
        self._due = 0.0
        # Once a batch was given up, nothing after it may be committed (that would skip it).
        self._gave_up = False

    def submit(self, batch: Batch) -> None:
        if self._gave_up:
            self.stats.batches_dropped += 1
            return
        if self._failing is not None:
            raise MessageRejected()
        self._attempt(batch)

    def poll(self) -> None:
        if self._failing is not None and time.monotonic() >= self._due:
            self._attempt(self._failing)
        self.next_step.poll()

    def join(self, timeout: float | None = None) -> None:
        """Stopping or revoked: a failing batch gets its next attempt now, then more while
        ``timeout`` lasts (three in all at most); still unwritten, it is dropped uncommitted
        and read again by whoever consumes next."""
        end = time.monotonic() + (timeout or 0.0)
        tries = 0
        while self._failing is not None:
            self._attempt(self._failing)
            tries += 1
            if self._failing is None:
                break
            if tries >= 3 or time.monotonic() + self.retry.delay(self._attempts) > end:
                log.error("stopping with an unwritten batch: it will be re-read")
                self.stats.batches_dropped += 1
                self._failing, self._gave_up = None, True
                break
            time.sleep(self.retry.delay(self._attempts))
        self.next_step.join(timeout)

    def close(self) -> None:
        self.next_step.close()

    def _attempt(self, batch: Batch) -> None:
        try:
            written = self.write.write(batch)
        except Exception as exc:  # every failure of the store or the DLQ is retried
            self._attempts = self._attempts + 1 if self._failing is batch else 1
            self._failing = batch
            self._due = time.monotonic() + self.retry.delay(self._attempts)
            metrics.WRITE_FAILURES.inc()
            self.stats.write_failures += 1
            log.warning("writing batch %s failed (attempt %d): %s", batch.dedup_token("*"),
                        self._attempts, exc)
            self.offsets.report_lag()  # nothing is committed meanwhile: the backlog shows
            return
        self._failing, self._attempts = None, 0
        self._count(batch, written)
        self.next_step.submit(batch)

    def _count(self, batch: Batch, written: dict[str, int]) -> None:
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


class Batching:
    """Adds decoded messages to the batch; hands it on when full (rows) or old enough (time).
    A batch the next step refuses is held, and messages are refused until it is taken."""

    def __init__(self, batcher: Batcher, next_step: ProcessingStep[Batch]) -> None:
        self.batcher = batcher
        self.next_step = next_step
        self._held: Batch | None = None

    def submit(self, item: Decoded) -> None:
        if self._held is not None and not self._hand_on(self._held):
            raise MessageRejected()
        self.batcher.add(item.message, item.item)
        if self.batcher.full():
            self._hand_on(self.batcher.take())

    def poll(self) -> None:
        if self._held is not None:
            self._hand_on(self._held)
        elif self.batcher.ready():
            self._hand_on(self.batcher.take())
        self.next_step.poll()

    def join(self, timeout: float | None = None) -> None:
        end = time.monotonic() + (timeout or 0.0)
        for batch in (self._held, self.batcher.take()):
            # The held batch first: offsets are committed in order.
            while batch is not None and not self._hand_on(batch):
                # The next step is retrying a batch: let it finish (or give up) within the time.
                self.next_step.join(max(0.0, end - time.monotonic()))
        self._held = None
        self.next_step.join(max(0.0, end - time.monotonic()))

    def close(self) -> None:
        self.next_step.close()

    def _hand_on(self, batch: Batch | None) -> bool:
        if batch is None:
            return True
        try:
            self.next_step.submit(batch)
        except MessageRejected:
            self._held = batch
            return False
        self._held = None
        return True


class Decode:
    """A message → a row or a dead letter (``sinks/decode.py``), within the dead-letter
    limit: most of the recent stream invalid stops the sink (``TooManyInvalid``) before the
    batch is written, so its offsets stay uncommitted. ``expect`` gives the record types each
    topic may carry (routed records for a topic it does not name)."""

    def __init__(self, next_step: ProcessingStep[Decoded], resolver: codec.Resolver | None,
                 retry: RetryPolicy, stats: Stats, limit: DeadLetterLimit | None = None,
                 expect: Mapping[str, Collection[str]] | None = None) -> None:
        self.next_step = next_step
        self.resolver = resolver
        self.retry = retry
        self.stats = stats
        self.limit = limit or DeadLetterLimit()
        self.expect = dict(expect or {})
        self._waiting: tuple[Message, int, float] | None = None  # registry: message, attempts, due
        self._refused: Decoded | None = None  # decoded, but the next step refused it: not again

    def submit(self, item: Message) -> None:
        decoded = self._refused if self._refused is not None and self._refused.message is item else None
        if decoded is None:
            decoded = Decoded(item, self._decode(item))
            self.limit.record(isinstance(decoded.item, DeadLetter))  # TooManyInvalid stops the sink
            if isinstance(decoded.item, DeadLetter):
                log.warning("dead-lettering %s[%d]@%d: %s", item.topic, item.partition, item.offset,
                            decoded.item.reason)
        try:
            self.next_step.submit(decoded)
        except MessageRejected:
            self._refused = decoded
            raise
        self._refused = None
        self.stats.messages += 1

    def _decode(self, item: Message) -> Row | DeadLetter:
        if self._waiting is not None:
            waiting, _attempts, due = self._waiting
            if waiting is not item or time.monotonic() < due:
                raise MessageRejected()
        try:
            row = decode(item, resolver=self.resolver, expect=self.expect.get(item.topic, ROUTED_TYPES))
        except RegistryUnavailable as exc:
            attempts = self._waiting[1] + 1 if self._waiting is not None else 1
            log.warning("%s[%d]@%d: %s (attempt %d)", item.topic, item.partition, item.offset, exc, attempts)
            self._waiting = (item, attempts, time.monotonic() + self.retry.delay(attempts))
            REGISTRY_WAITING.set(1)
            raise MessageRejected() from exc
        if self._waiting is not None:
            self._waiting = None
            REGISTRY_WAITING.set(0)
        return row

    def poll(self) -> None:
        self.next_step.poll()

    def join(self, timeout: float | None = None) -> None:
        self.next_step.join(timeout)

    def close(self) -> None:
        if self._waiting is not None:
            REGISTRY_WAITING.set(0)  # the message is read again at the next start
        self.next_step.close()


__all__ = ["Batching", "CommitOffsets", "Decode", "Decoded", "RetryPolicy", "Stats", "WriteWithRetry"]
