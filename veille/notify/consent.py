"""The consent topic, ``<prefix>.notify.consent``: who may be told of which incident.

Restricted (the intake writes, the notifier alone reads and writes: ``veille/security.py``),
compacted, keyed by incident id: the latest record of an incident is its consent, a tombstone
(null value) withdraws it. Contacts live here and nowhere else: not in the shared store, not in
the notifier's changelog (``veille/notify/tracks.py`` holds ids and statuses), not in logs.

* :class:`ConsentWriter` writes consents and tombstones (idempotent producer, acks=all; the
  intake waits for the broker's acknowledgement before it answers).
* :class:`ConsentTable` reads the whole topic into memory on the consumer runtime (read-all mode,
  like the intake's Open311 read model) and keeps following it: a withdrawal takes effect as soon
  as it is read. :meth:`ConsentTable.catch_up` is the notifier's barrier, without clocks: it
  notes the routed topic's end offsets, *then* the consent topic's, and waits until the table
  read up to the latter. The intake writes a consent *before* the incident it is for, so a
  routing record already in the routed topic then had its consent in the consent topic then: for
  every record below those routed offsets (:meth:`ConsentTable.covers`), a consent missing from
  the table does not exist. One look serves a whole batch the notifier polled.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from confluent_kafka import Consumer, KafkaException, TopicPartition

from veille.config import Settings
from veille.consumer import Assignment, LastStep, Offsets, ProcessingStep, StreamRunner
from veille.kafka import Message, new_producer, producer_config
from veille.schemas import codec
from veille.schemas.models import NotificationConsent
from veille.topics import CONSENT_TYPES, Topics

log = logging.getLogger("veille.notify.consent")


class ConsentWriter:
    def __init__(self, settings: Settings, client_id: str) -> None:
        self.topic = Topics(settings.topic_prefix).notify_consent
        self.producer = new_producer(producer_config(settings, **{"client.id": client_id}))
        self._lock = threading.Lock()

    def _write(self, key: UUID, value: bytes | None, timeout: float) -> bool:
        errors: list[str] = []

        def report(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err.code()))

        with self._lock:
            self.producer.produce(self.topic, key=str(key).encode(), value=value, on_delivery=report)
            left = self.producer.flush(timeout)
        if left or errors:
            log.warning("consent of incident %s: not acknowledged (%s)", key, ",".join(errors) or "timeout")
            return False
        return True

    def write(self, consent: NotificationConsent, timeout: float = 30.0) -> bool:
        """True once the broker acknowledged it (acks=all)."""
        return self._write(consent.incident_id, consent.encode(), timeout)

    def withdraw(self, incident_id: UUID, timeout: float = 30.0) -> bool:
        """The tombstone: the contact leaves the topic at its next compaction."""
        return self._write(incident_id, None, timeout)

    async def write_async(self, consent: NotificationConsent) -> bool:
        return await asyncio.get_running_loop().run_in_executor(None, self.write, consent)

    async def withdraw_async(self, incident_id: UUID) -> bool:
        return await asyncio.get_running_loop().run_in_executor(None, self.withdraw, incident_id)

    def close(self) -> None:
        self.producer.flush(10)


class ConsentTable:
    """Consents by incident id, in memory, following the topic (a thread of its own)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = Topics(settings.topic_prefix).notify_consent
        self.routed = Topics(settings.topic_prefix).routed
        self._config = {**settings.kafka_client_config(), "group.id": f"veille-notify-table-{uuid.uuid4()}",
                        "enable.auto.commit": False, "client.id": "veille-notify-consents"}
        self._consents: dict[UUID, NotificationConsent] = {}
        self._positions: dict[int, int] = {}  # partition -> next offset to read
        self._cond = threading.Condition()
        self._runner: StreamRunner | None = None
        self._thread: threading.Thread | None = None
        self._covered: dict[tuple[str, int], int] = {}  # routed partition -> end offset at the last look
        self._watermarks: Consumer | None = None
        self.skipped = 0

    # ------------------------------------------------------------------ reading

    def get(self, incident_id: UUID) -> NotificationConsent | None:
        with self._cond:
            return self._consents.get(incident_id)

    def snapshot(self) -> list[NotificationConsent]:
        with self._cond:
            return list(self._consents.values())

    @property
    def ready(self) -> bool:
        """Has the table caught up once (so a consent missing from it was withdrawn)?"""
        return bool(self._covered)

    def covers(self, topic: str, partition: int, offset: int) -> bool:
        """Was this routed record already written at the last :meth:`catch_up`?"""
        return offset < self._covered.get((topic, partition), 0)

    def catch_up(self, timeout: float = 30.0) -> bool:
        """Wait until the table holds every consent written before the routed topic's present end."""
        routed = self._high_watermarks(self.routed)
        high = self._high_watermarks(self.topic)
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(self._positions.get(p, 0) < end for p, end in high.items()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
        self._covered = {(self.routed, p): end for p, end in routed.items()}
        return True

    def _high_watermarks(self, topic: str) -> dict[int, int]:
        if self._watermarks is None:
            self._watermarks = Consumer({**self._config, "client.id": "veille-notify-watermarks"})
        meta = self._watermarks.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None:
            raise KafkaException(meta.error)
        return {p: self._watermarks.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in meta.partitions}

    # ------------------------------------------------------------------ writing (its thread)

    def apply(self, item: Message) -> None:
        with self._cond:
            self._apply(item)
            self._positions[item.partition] = item.offset + 1
            self._cond.notify_all()

    def _apply(self, item: Message) -> None:
        try:
            incident_id = UUID(item.key.decode()) if item.key else None
        except ValueError:
            incident_id = None
        if incident_id is None:
            self.skipped += 1
            log.error("%s[%d]@%d: no incident id as key: skipped", item.topic, item.partition, item.offset)
            return
        if item.value is None:
            self._consents.pop(incident_id, None)
            return
        try:
            consent = NotificationConsent.from_avro(codec.decode(item.value, expect=CONSENT_TYPES).value)
        except Exception as exc:  # never the bytes: they hold a contact
            self.skipped += 1
            log.error("%s[%d]@%d is not a consent (%s): skipped", item.topic, item.partition, item.offset,
                      type(exc).__name__)
            return
        self._consents[incident_id] = consent

    # ------------------------------------------------------------------ consuming

    def start(self) -> None:
        if self._thread is not None:
            return
        self._runner = StreamRunner(self._config, [self.topic], self._chain, group=False)
        self._thread = threading.Thread(target=self._runner.run, name="notify-consents", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._runner is not None:
            self._runner.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._watermarks is not None:
            self._watermarks.close()
            self._watermarks = None

    def _chain(self, _offsets: Offsets, assignment: Assignment) -> ProcessingStep[Message]:
        return _Apply(self, assignment.high)


class _Apply(LastStep[Message]):
    def __init__(self, table: ConsentTable, high: Mapping[tuple[str, int], int]) -> None:
        self.table = table

    def submit(self, item: Message) -> None:
        self.table.apply(item)
