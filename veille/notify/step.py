"""The notifier's consumer step: routed records in, messages out, offsets committed after.

Before any record of ``<prefix>.routed``, the consent table holds what was written before it
(:meth:`ConsentTable.catch_up`, one look per polled batch). Each record is folded into its
incident's :class:`Track` if the incident has a consent; when the overall state changed in a way worth telling
(:func:`veille.notify.changes.change`), the message is sent *before* the new entry is written to
the changelog (``<prefix>.notify.tracks``, acknowledged by the broker), and the offsets are
committed after that. A changelog write that fails holds the record (``MessageRejected``): it
is folded again (a no-op) and written again, and nothing past it is committed. A message the relay or
gateway defers (4xx SMTP, 5xx HTTP, a timeout) holds the partition's reading: the step raises
``MessageRejected`` until its backoff elapsed, the runner pauses and submits the same record
again, and only ``retry_attempts`` later is the change given up (logged, counted). Records that
cannot be read are skipped with a log line and a metric: never a crash.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

from confluent_kafka import TopicPartition

from veille.consumer import MessageRejected, Offsets
from veille.deliver.view import category_label
from veille.kafka import Message, partition_for
from veille.notify import changes, metrics
from veille.notify.cases import CaseWatch
from veille.notify.changelog import TrackChangelog
from veille.notify.changes import BodyStatus, Change, State, Track
from veille.notify.consent import ConsentTable, ConsentWriter
from veille.notify.links import UnsubscribeLinks
from veille.notify.messages import Notice
from veille.notify.send import Messenger
from veille.notify.settings import NotifySettings
from veille.notify.tracks import Entry, TrackTable, key_of
from veille.schemas import codec
from veille.schemas.models import (
    CaseSplit,
    DeliveryOutcome,
    IncidentStatus,
    NotificationConsent,
    RoutedIncident,
    StatusUpdate,
)
from veille.topics import ROUTED_TYPES

log = logging.getLogger("veille.notify")


class NotifyStep:
    def __init__(self, settings: NotifySettings, table: ConsentTable, store: TrackTable,
                 changelog: TrackChangelog, messenger: Messenger, writer: ConsentWriter, offsets: Offsets,
                 municipality_name: Callable[[str], str], loop: asyncio.AbstractEventLoop,
                 resolver: codec.Resolver | None = None, routed_partitions: int = 1,
                 cases: CaseWatch | None = None) -> None:
        self.settings = settings
        self.cases = cases  # the cases' states (veille/notify/cases.py); None: grouping ignored
        self.table = table
        self.store = store  # the assigned partitions' entries, restored before this step was built
        self.changelog = changelog
        self.routed_partitions = routed_partitions
        self.messenger = messenger
        self.writer = writer
        self.offsets = offsets
        self.municipality_name = municipality_name
        self.loop = loop
        self.resolver = resolver
        self.links = UnsubscribeLinks(settings.link_key.get_secret_value(), settings.public_base_url)
        self.done: dict[tuple[str, int], int] = {}  # next offset to commit
        self.committed: dict[tuple[str, int], int] = {}
        self._retry: tuple[tuple[str, int, int], int, float] | None = None  # (position, attempts, not before)
        self._swept_at = 0.0

    # -- ProcessingStep ------------------------------------------------------------------------

    def submit(self, item: Message) -> None:
        position = (item.topic, item.partition, item.offset)
        if self._retry is not None and self._retry[0] == position and time.monotonic() < self._retry[2]:
            raise MessageRejected()
        self._handle(item, position)
        self._retry = None
        self.done[(item.topic, item.partition)] = item.offset + 1

    def poll(self) -> None:
        self._tell_cases()
        ready = [TopicPartition(t, p, o) for (t, p), o in self.done.items()
                 if self.committed.get((t, p)) != o]
        if ready and self.offsets.commit(ready):
            for tp in ready:
                self.committed[(tp.topic, tp.partition)] = tp.offset
        if time.monotonic() - self._swept_at >= self.settings.sweep_seconds:
            self.sweep()
        metrics.TRACKED.set(len(self.store))

    def sweep(self, now: datetime | None = None) -> None:
        """Withdraw the consents past their retention: ``retention_days`` after the incident was
        resolved or closed, ``orphan_days`` after consenting for an incident never routed."""
        self._swept_at = time.monotonic()
        now = now or datetime.now(UTC)
        cutoff = (now - timedelta(seconds=self.settings.retention_seconds)).isoformat()
        for partition, incident_id in list(self.store.closed_before(cutoff)):
            if self.table.get(incident_id) is not None:
                if not self.writer.withdraw(incident_id):
                    continue  # tried again at the next sweep
                metrics.WITHDRAWN.labels("retention").inc()
                log.info("incident=%s: consent withdrawn after the retention", incident_id)
            self._forget(partition, incident_id)
        if self.table.ready:
            # A consent withdrawn (an unsubscribe link): its entry goes too. An entry is made only
            # for an incident whose consent the table held, so a missing one was withdrawn.
            for partition, incident_id, _entry in list(self.store.entries()):
                if self.table.get(incident_id) is None:
                    self._forget(partition, incident_id)
        orphan = now - timedelta(days=self.settings.orphan_days)
        mine = self.store.partitions
        for consent in self.table.snapshot():
            # Only the consents of incidents routed to this notifier's partitions: another
            # replica holds the others' entries.
            if consent.consented_at < orphan \
                    and partition_for(key_of(consent.incident_id), self.routed_partitions) in mine \
                    and consent.incident_id not in self.store \
                    and self.writer.withdraw(consent.incident_id):
                metrics.WITHDRAWN.labels("orphan").inc()
                log.info("incident=%s: consent withdrawn, its incident never came", consent.incident_id)

    def _forget(self, partition: int, incident_id: UUID) -> None:
        if self.changelog.write(partition, incident_id, None):  # else tried again at the next sweep
            self.store.delete(partition, incident_id)

    def join(self, timeout: float | None = None) -> None:
        self.poll()

    def close(self) -> None:
        pass

    # -- one record ----------------------------------------------------------------------------

    def _handle(self, item: Message, position: tuple[str, int, int]) -> None:
        # The consents (and withdrawals) written before this record are in the table first: a
        # restarted notifier must not take "no consent yet" for "none" (it would move the told
        # state on without telling).
        if not self.table.covers(*position) and not self.table.catch_up():
            raise RuntimeError("the consent topic could not be read up to date: not going on")
        record = self._decode(item)
        if isinstance(record, RoutedIncident):
            incident_id = record.id
            entry = self.store.get(item.partition, incident_id)
            if entry is None:
                if self.table.get(incident_id) is None:
                    return  # no consent: nobody to tell, nothing kept
                entry = Entry(Track(), None)
            written = entry.encode(incident_id) if incident_id in self.store else None
            changes.apply_routed(entry.track, record)
            if record.case_id is not None and entry.track.case_id is None:
                entry.track.case_id = str(record.case_id)
        elif isinstance(record, StatusUpdate):
            incident_id = record.incident_id
            entry = self.store.get(item.partition, incident_id)
            if entry is None:
                return
            written = entry.encode(incident_id)
            changes.apply_status(entry.track, record)
        elif isinstance(record, CaseSplit):
            incident_id = record.incident_id
            entry = self.store.get(item.partition, incident_id)
            if entry is None or entry.track.split:
                return
            written = entry.encode(incident_id)
            # Its own state from now on: the splitting body answers this report on its own dispatch.
            entry.track.split = True
            entry.track.bodies.setdefault(record.agency_id, BodyStatus(IncidentStatus.received.value,
                                                                       record.at.isoformat()))
        else:
            return
        self._tell(incident_id, entry, position, written)

    # -- cases (veille/notify/cases.py) ----------------------------------------------------------

    def _state(self, entry: Entry) -> State | None:
        """The state a resident is told: its case's for a report in one (None until the watcher
        caught up), else its own."""
        if entry.track.case_id is not None and not entry.track.split and self.cases is not None:
            return self.cases.state(entry.track.case_id)
        return changes.overall(entry.track)

    def _tell_cases(self) -> None:
        """Tell the members held here of the cases the watcher saw change (this thread only)."""
        if self.cases is None:
            return
        changed = self.cases.drain()
        if not changed:
            return
        later: set[str] = set()
        for partition, incident_id, entry in list(self.store.entries()):
            case = entry.track.case_id
            if case not in changed or entry.track.split:
                continue
            position = (f"case:{case}", partition, 0)
            if self._retry is not None and self._retry[0] == position and time.monotonic() < self._retry[2]:
                later.add(case)
                continue
            try:
                self._tell(incident_id, entry, position, entry.encode(incident_id))
            except MessageRejected:  # a deferred message or a changelog write: at a later poll
                later.add(case)
        if later:
            self.cases.requeue(later)

    def _tell(self, incident_id: UUID, entry: Entry, position: tuple[str, int, int],
              written: bytes | None) -> None:
        now = self._state(entry)
        if now is not None:
            told = changes.change(entry.told, now)
            consent = self.table.get(incident_id)
            if told is not None and consent is not None:
                self._send(consent, told, now.generation, entry.track, position)
            entry.told = changes.told_after(entry.told, now, told)
            if now.phase in changes.TERMINAL:
                entry.track.closed_at = entry.track.closed_at or datetime.now(UTC).isoformat()
            elif now.phase is not changes.Phase.awaiting_reroute:
                entry.track.closed_at = None
        self.store.put(position[1], incident_id, entry)
        if entry.encode(incident_id) == written:
            return
        if not self.changelog.write(position[1], incident_id, entry):
            # Kept in memory (a message sent is not sent again): the record comes again, folds
            # to the same entry, and the write is tried again before its offset is committed.
            metrics.CHANGELOG_FAILED.inc()
            raise MessageRejected()

    def _send(self, consent: NotificationConsent, change: Change, generation: int, track: Track,
              position: tuple[str, int, int]) -> None:
        notice = Notice(incident_id=consent.incident_id, reference=consent.reference, change=change,
                        generation=generation, category_label=category_label(track.category),
                        municipality_name=self.municipality_name(track.municipality),
                        tracking_url=self.settings.tracking_url(consent.reference),
                        unsubscribe_url=self.links.url(consent.reference, consent.incident_id),
                        on_behalf_of_relay=consent.on_behalf_of_relay)
        outcome, detail = self.loop.run_until_complete(self.messenger.send(consent, notice))
        metrics.MESSAGES.labels(consent.channel.value, change.value, outcome.value).inc()
        log.info("incident=%s change=%s channel=%s outcome=%s (%s)", consent.incident_id, change.value,
                 consent.channel.value, outcome.value, detail)
        if outcome is DeliveryOutcome.retry:
            attempts = self._retry[1] + 1 if self._retry and self._retry[0] == position else 1
            if attempts < self.settings.retry_attempts:
                wait = self.settings.retry_base_seconds * 2 ** (attempts - 1)
                self._retry = (position, attempts, time.monotonic() + wait)
                raise MessageRejected()
            log.error("incident=%s change=%s: given up after %d attempts", consent.incident_id, change.value,
                      attempts)

    def _decode(self, item: Message) -> RoutedIncident | StatusUpdate | CaseSplit | None:
        try:
            decoded = codec.decode(item.value, expect=ROUTED_TYPES, resolver=self.resolver)
            if decoded.record_type == "RoutedIncident":
                return RoutedIncident.from_avro(decoded.value)
            if decoded.record_type == "StatusUpdate":
                return StatusUpdate.from_avro(decoded.value)
            if decoded.record_type == "CaseSplit":
                return CaseSplit.from_avro(decoded.value)
            return None  # alerts: residents do not report them
        except Exception as exc:  # the router wrote it: a bug or a foreign writer, never fatal
            metrics.SKIPPED.labels(type(exc).__name__).inc()
            log.error("%s[%d]@%d is not a routing record (%s): skipped", item.topic, item.partition,
                      item.offset, type(exc).__name__)
            return None
