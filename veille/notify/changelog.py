"""The notifier's state changelog, ``<prefix>.notify.tracks``: written after each change,
read back on each assignment (the Kafka I/O of :mod:`veille.notify.tracks`).

* :meth:`TrackChangelog.write` produces one entry (or a tombstone) to the partition of the
  routed record it comes from and waits for the broker's acknowledgement (idempotent
  producer, acks=all, the delivery report checked): the step commits the routed offsets only
  after that, so what was told is durable before the records that led to it are skipped.
* :meth:`TrackChangelog.restore` reads the changelog partitions numbered as the assigned
  routed partitions from the beginning up to their high watermark at the start (read-all mode
  of the consumer runtime: no group, no commits), before any routed record of them.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Collection, Mapping
from typing import Any
from uuid import UUID

from confluent_kafka import KafkaError
from confluent_kafka import Message as KafkaMessage

from veille.config import Settings
from veille.consumer import Assignment, LastStep, Offsets, ProcessingStep, StreamRunner
from veille.kafka import Message, new_producer, produce, producer_config
from veille.notify.tracks import Entry, TrackTable, key_of
from veille.topics import Topics

log = logging.getLogger("veille.notify.changelog")


class RestoreFailed(RuntimeError):
    """The changelog could not be read up to its end: the notifier must not go on without it."""


class TrackChangelog:
    def __init__(self, settings: Settings, client_id: str, timeout: float = 30.0) -> None:
        self.settings = settings
        self.topic = Topics(settings.topic_prefix).notify_tracks
        self.timeout = timeout
        self.producer = new_producer(producer_config(settings, **{"client.id": client_id}))
        self._lock = threading.Lock()

    def write(self, partition: int, incident_id: UUID, entry: Entry | None) -> bool:
        """True once the broker acknowledged the entry (None: the tombstone)."""
        errors: list[str] = []

        def report(err: KafkaError | None, _msg: KafkaMessage) -> None:
            if err is not None:
                errors.append(str(err))

        value = entry.encode(incident_id) if entry is not None else None
        with self._lock:
            try:
                produce(self.producer, self.topic, key_of(incident_id), value, report, partition=partition)
            except Exception as exc:  # refused outright: the caller keeps the entry and tries again
                errors.append(str(exc))
            else:
                if self.producer.flush(self.timeout):
                    errors.append(f"not acknowledged within {self.timeout:.0f}s")
        if errors:
            log.warning("%s[%d] entry of incident %s: not written (%s)", self.topic, partition, incident_id,
                        "; ".join(errors))
            return False
        return True

    def restore(self, partitions: Collection[int], table: TrackTable, timeout: float = 120.0) -> None:
        """Fill ``table`` with these partitions' entries, read to the end; raises RestoreFailed."""
        table.hold(set(partitions))
        if not partitions:
            return
        config = {**self.settings.kafka_client_config(), "group.id": f"veille-notify-restore-{uuid.uuid4()}",
                  "enable.auto.commit": False, "client.id": "veille-notify-restore"}
        state: dict[str, Any] = {}

        def chain(_offsets: Offsets, assignment: Assignment) -> ProcessingStep[Message]:
            state["high"] = dict(assignment.high)
            return _Restore(table)

        runner = StreamRunner(config, [self.topic], chain, group=False, only=partitions)
        deadline = time.monotonic() + timeout
        started = time.monotonic()

        def restored() -> bool:
            high: Mapping[tuple[str, int], int] | None = state.get("high")
            if high is not None:
                # The consumer's position, not the last offset read: compaction may have left
                # no record at the end of a partition.
                positions = {(tp.topic, tp.partition): tp.offset
                             for tp in runner.consumer.position(runner.assigned)}
                state["done"] = all(positions.get(tp, 0) >= end for tp, end in high.items() if end > 0)
            return bool(state.get("done")) or time.monotonic() > deadline

        runner.run(until=restored)
        if not state.get("done"):
            raise RestoreFailed(f"{self.topic} partitions {sorted(partitions)} not read to their end "
                                f"within {timeout:.0f}s")
        log.info("restored %d entries of %s partitions %s in %.2fs", len(table), self.topic,
                 sorted(partitions), time.monotonic() - started)

    def close(self) -> None:
        self.producer.flush(10)


class _Restore(LastStep[Message]):
    def __init__(self, table: TrackTable) -> None:
        self.table = table

    def submit(self, item: Message) -> None:
        self.table.restore_from(item)
