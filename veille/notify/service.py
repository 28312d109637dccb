"""``veille notify run``: residents who consented hear of each meaningful change of their incident.

Assembled here, in one place: the consents are read into a :class:`ConsentTable` (the whole
compacted topic, followed as it grows); ``<prefix>.routed`` is read on the consumer runtime
(``veille/consumer``, group ``<prefix>.notify``, a static member like the sink and the
deliverer) through :class:`NotifyStep` (offsets committed after the message went out and the
new entry was acknowledged on the changelog ``<prefix>.notify.tracks``); messages go out by
e-mail (the deliverer's SMTP client) or SMS (the gateway adapter); tombstones of the consents
past their retention go out through the notifier's one producer.

State: on each assignment, the factory restores the assigned partitions' entries from the
same-numbered changelog partitions (read to their end, no group) before the step takes any
record, and the entries of revoked partitions are dropped with the old step: any replica can
take any partition over, nothing is kept on disk.

Cases (issue 25): a resident of a report grouped into a case is told its case's changes; every
replica reads the cases of the whole routed topic (:class:`CaseWatch`, ``veille/notify/cases.py``
says why and how).

Guarantee: one message per meaningful change. The told state of each incident is acknowledged on
the changelog before the offsets that led to it are committed: a restart (or the replica taking
the partition over) reads the uncommitted records again, folds them into the same restored
tracks and finds nothing new to tell. A crash between sending a message and the changelog's
acknowledgement of its told state sends it once more, with the same ``Message-ID``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from veille.config import Settings
from veille.consumer import Assignment, Offsets, ProcessingStep, StreamRunner
from veille.deliver.settings import DeliverySettings
from veille.kafka import Message, consumer_config, static_member_id
from veille.notify import metrics
from veille.notify.cases import CaseWatch
from veille.notify.changelog import TrackChangelog
from veille.notify.consent import ConsentTable, ConsentWriter
from veille.notify.send import Messenger
from veille.notify.settings import NotifySettings
from veille.notify.step import NotifyStep
from veille.notify.tracks import TrackTable
from veille.schemas.registry import resolver_from_settings
from veille.territory import Territory
from veille.topics import Topics

log = logging.getLogger("veille.notify")


class Notifier:
    def __init__(self, settings: Settings, territory: Territory, notify: NotifySettings | None = None,
                 delivery: DeliverySettings | None = None, *,
                 extra_consumer_config: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.territory = territory
        self.notify = notify or NotifySettings()
        self.topics = Topics(settings.topic_prefix)
        self.group_id = f"{settings.topic_prefix}.notify"
        self.table = ConsentTable(settings)
        self.cases = CaseWatch(settings)  # every partition's cases (veille/notify/cases.py)
        self.writer = ConsentWriter(settings, f"{settings.topic_prefix}-notify")
        self.changelog = TrackChangelog(settings, f"{settings.topic_prefix}-notify-tracks")
        self.messenger = Messenger(self.notify, delivery or DeliverySettings())
        self.resolver = resolver_from_settings(settings)
        self.loop = asyncio.new_event_loop()
        self.step: NotifyStep | None = None
        config = {**consumer_config(settings, self.group_id),
                  "group.instance.id": static_member_id(settings, "notify"),
                  "session.timeout.ms": int(settings.sink_session_seconds * 1000),
                  # a message may wait for a slow relay: never long enough to leave the group
                  "max.poll.interval.ms": 600_000,
                  **(extra_consumer_config or {})}
        self.runner = StreamRunner(config, [self.topics.routed], self._assemble, revoke_timeout=5.0,
                                   join_timeout=15.0)

    def _municipality_name(self, code: str) -> str:
        municipality = self.territory.municipalities.get(code)
        return municipality.name if municipality is not None else code

    def _assemble(self, offsets: Offsets, assignment: Assignment) -> ProcessingStep[Message]:
        # Called on assignment, before any record of it: a fresh table (the revoked partitions'
        # entries went with the previous step), filled from the changelog to its end.
        started = time.monotonic()
        store = TrackTable()
        mine = [tp.partition for tp in assignment.partitions if tp.topic == self.topics.routed]
        self.changelog.restore(mine, store)
        metrics.RESTORED.set(time.monotonic() - started)
        metrics.TRACKED.set(len(store))
        self.step = NotifyStep(self.notify, self.table, store, self.changelog, self.messenger, self.writer,
                               offsets, self._municipality_name, self.loop, self.resolver,
                               routed_partitions=self._routed_partitions(), cases=self.cases)
        return self.step

    def _routed_partitions(self) -> int:
        topic = self.topics.routed
        meta = self.runner.consumer.list_topics(topic, timeout=10).topics[topic]
        return max(1, len(meta.partitions))

    def stop(self) -> None:
        self.runner.stop()

    def run(self) -> None:
        self.table.start()
        self.cases.start()
        try:
            self.runner.run()
        finally:
            self.cases.stop()
            self.table.stop()
            self.writer.close()
            self.changelog.close()
            self.loop.close()
