"""The deliverer's consumer side: dispatch topics in, offsets committed only once delivered.

One step on the consumer runtime (``veille/consumer``). Each dispatch is decoded and handed to
the engine (``veille/deliver/engine.py``) as a job for every method its body is configured for
(a body with Kafka only is done at once: its topic *is* its delivery, and its receipt says so).
Offsets are committed per partition up to the first dispatch not yet delivered by every method
(a watermark), so a restart re-delivers only what was not, with the same dispatch id (the
receivers' idempotency key). Each body has its own topic: a body whose destination is down holds
back only its own offsets, and past ``max_pending`` dispatches its partitions are paused (the
runner's ``hold``) until it drains, while every other body's dispatches flow.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import TopicPartition

from veille.consumer import Offsets
from veille.deliver import metrics
from veille.deliver.engine import Engine, Job
from veille.kafka import Message
from veille.schemas import codec
from veille.schemas.models import DeliveryMethod, DeliveryOutcome, DeliveryReceipt, Dispatch, EventType
from veille.territory import Territory
from veille.topics import DISPATCH_TYPES, Topics

log = logging.getLogger("veille.deliver")

MAX_PENDING = 2000  # dispatches of one body in flight before its partitions are paused
GAUGE_SECONDS = 1.0


@dataclass
class PartitionWatermark:
    """Offsets in flight on one partition; what may be committed is below the first of them."""

    pending: set[int] = field(default_factory=set)
    next_offset: int = -1  # one past the highest offset seen
    committed: int = -1

    def commit_point(self) -> int:
        return min(self.pending) if self.pending else self.next_offset


class DeliverStep:
    def __init__(self, engine: Engine, territory: Territory, topics: Topics, offsets: Offsets,
                 emit: Callable[[DeliveryReceipt], None], flush: Callable[[], None],
                 resolver: codec.Resolver | None = None, max_pending: int = MAX_PENDING) -> None:
        self.engine = engine
        self.territory = territory
        self.topics = topics
        self.pending_by_agency: Counter[str] = Counter()
        self.offsets = offsets
        self.emit = emit
        self.flush = flush
        self.resolver = resolver
        self.max_pending = max_pending
        self.partitions: dict[tuple[str, int], PartitionWatermark] = defaultdict(PartitionWatermark)
        self.jobs: dict[tuple[str, int, int], Job] = {}
        self.finished: queue.SimpleQueue[Job] = queue.SimpleQueue()  # filled by the engine's thread
        self.held: set[str] = set()  # agencies whose partitions are paused
        self._gauges_at = 0.0

    # -- ProcessingStep ------------------------------------------------------------------------

    def submit(self, item: Message) -> None:
        mark = self.partitions[(item.topic, item.partition)]
        mark.next_offset = max(mark.next_offset, item.offset + 1)
        dispatch = self._decode(item)
        agency = self.territory.agencies.get(dispatch.agency_id) if dispatch is not None else None
        if dispatch is None or agency is None:
            return  # logged; nothing to deliver, the offset is committed with the next
        # Its topic is every body's first delivery (the replayable record): a receipt says so.
        self.emit(DeliveryReceipt(dispatch_id=dispatch.id, agency_id=agency.id, method=DeliveryMethod.kafka,
                                  attempt=1, outcome=DeliveryOutcome.delivered,
                                  latency_ms=_ms_since(dispatch), at=datetime.now(UTC)))
        metrics.ATTEMPTS.labels(agency.id, DeliveryMethod.kafka.value, DeliveryOutcome.delivered.value).inc()
        waiting = set(agency.delivery.methods) - {DeliveryMethod.kafka}
        if dispatch.event_type is EventType.alert:
            # Open311 takes service requests: a CAP alert reaches such a body by its other
            # methods (and its topic).
            waiting.discard(DeliveryMethod.open311)
        if not waiting:
            return
        key = (item.topic, item.partition, item.offset)
        job = Job(dispatch, agency, key, waiting)
        self.jobs[key] = job
        self.pending_by_agency[agency.id] += 1
        mark.pending.add(item.offset)
        self.engine.submit(job)
        self._hold_if_full(agency.id)

    def poll(self) -> None:
        while True:
            try:
                job = self.finished.get_nowait()
            except queue.Empty:
                break
            if self.jobs.get(job.key) is job:  # not a job of an earlier assignment
                del self.jobs[job.key]
                self.pending_by_agency[job.agency.id] -= 1
                self.partitions[(job.key[0], job.key[1])].pending.discard(job.key[2])
        self._commit()
        self._release_drained()
        if time.monotonic() - self._gauges_at >= GAUGE_SECONDS:
            self._gauges()

    def join(self, timeout: float | None = None) -> None:
        """Revoked or stopping: wait for what is in flight (within ``timeout``), commit what
        was delivered; the rest is cancelled, uncommitted, and delivered by the next owner."""
        end = time.monotonic() + (timeout or 0.0)
        while self.jobs and time.monotonic() < end:
            time.sleep(0.05)
            self.poll()
        self.poll()
        for job in self.jobs.values():
            job.cancelled = True
        if self.jobs:
            log.info("%d dispatches not delivered yet: left to whoever consumes next", len(self.jobs))
        self.jobs.clear()
        self.pending_by_agency.clear()

    def close(self) -> None:
        pass

    def job_done(self, job: Job) -> None:
        """Called by the engine's thread."""
        self.finished.put(job)

    # -- internals -----------------------------------------------------------------------------

    def _decode(self, item: Message) -> Dispatch | None:
        try:
            decoded = codec.decode(item.value, expect=DISPATCH_TYPES, resolver=self.resolver)
            return Dispatch.from_avro(decoded.value)
        except Exception as exc:  # the router wrote it: a bug or a foreign writer, never fatal
            log.error("%s[%d]@%d is not a dispatch (%s): skipped", item.topic, item.partition, item.offset,
                      type(exc).__name__)
            return None

    def _commit(self) -> None:
        ready = []
        for (topic, partition), mark in self.partitions.items():
            point = mark.commit_point()
            if point > mark.committed:
                ready.append((TopicPartition(topic, partition, point), mark))
        if not ready:
            return
        self.flush()  # the receipts of what is committed are durable first
        if self.offsets.commit([tp for tp, _ in ready]):
            for tp, mark in ready:
                mark.committed = tp.offset

    def _agency_partitions(self, agency_id: str) -> list[TopicPartition]:
        topic = self.topics.dispatch(agency_id)
        return [TopicPartition(t, p) for (t, p) in self.partitions if t == topic]

    def _pending_of(self, agency_id: str) -> int:
        return self.pending_by_agency[agency_id]

    def _hold_if_full(self, agency_id: str) -> None:
        if agency_id not in self.held and self._pending_of(agency_id) >= self.max_pending:
            self.offsets.hold(self._agency_partitions(agency_id))
            self.held.add(agency_id)
            log.warning("%s: %d dispatches waiting for delivery: its topic is paused until they drain",
                        agency_id, self.max_pending)

    def _release_drained(self) -> None:
        for agency_id in list(self.held):
            if self._pending_of(agency_id) <= self.max_pending // 2:
                self.offsets.release(self._agency_partitions(agency_id))
                self.held.discard(agency_id)

    def _gauges(self) -> None:
        self._gauges_at = time.monotonic()
        now = datetime.now(UTC)
        pending: dict[str, int] = dict.fromkeys(self.territory.agencies, 0)
        oldest: dict[str, float] = dict.fromkeys(self.territory.agencies, 0.0)
        for job in self.jobs.values():
            pending[job.agency.id] += 1
            age = (now - job.routed_at).total_seconds()
            oldest[job.agency.id] = max(oldest[job.agency.id], age)
        for agency_id, n in pending.items():
            metrics.PENDING.labels(agency_id).set(n)
            metrics.OLDEST_UNDELIVERED.labels(agency_id).set(oldest[agency_id])


def _ms_since(dispatch: Dispatch) -> int:
    return max(0, round((datetime.now(UTC) - dispatch.routed_at).total_seconds() * 1000))
