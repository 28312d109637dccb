"""Feeds the desk's read model from Kafka: a background consumer on the consumer runtime.

Read-all mode (``veille/consumer``: every partition from the beginning, no consumer group, no
committed offsets), like the Open311 read model: the book is rebuilt at each start, and the
topics' retention (30 days) bounds what a restarted intake shows. It reads the dispatch topic
of every agency of the territory (so the intake's principal needs READ on them, see
``veille/security.py``), ``<prefix>.routed`` and ``<prefix>.delivery``.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from veille.config import Settings
from veille.consumer import Assignment, LastStep, Offsets, ProcessingStep, StreamRunner
from veille.kafka import Message
from veille.producers.desk.book import DeskBook
from veille.schemas import codec
from veille.schemas.models import CaseSplit, DeliveryReceipt, Dispatch, RoutedIncident, StatusUpdate
from veille.schemas.registry import resolver_from_settings
from veille.topics import Topics

log = logging.getLogger(__name__)
READ = {"Dispatch": Dispatch, "RoutedIncident": RoutedIncident, "StatusUpdate": StatusUpdate,
        "DeliveryReceipt": DeliveryReceipt, "CaseSplit": CaseSplit}


def apply_bytes(book: DeskBook, topics: Topics, topic: str, value: bytes | None,
                resolver: Any = None) -> None:
    """Decode one record of a topic the feed reads and apply it; anything else is skipped."""
    try:
        decoded = codec.decode(value, expect=topics.record_types(topic), resolver=resolver)
        model = READ.get(decoded.record_type)
        if model is not None:
            book.apply(model.from_avro(decoded.value))
    except Exception:  # a record the hub's own components wrote: count it, never log the bytes
        book.skipped += 1


class DeskFeed:
    def __init__(self, book: DeskBook, settings: Settings, agencies: Iterable[str]) -> None:
        self.book = book
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.names = [self.topics.routed, self.topics.delivery]
        self.names += [self.topics.dispatch(a) for a in sorted(agencies)]
        self._thread: threading.Thread | None = None
        self._runner: StreamRunner | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._runner = StreamRunner(
            {**self.settings.kafka_client_config(), "group.id": f"veille-desk-{uuid.uuid4()}",
             "enable.auto.commit": False, "client.id": "veille-desk"},
            self.names, self._chain, group=False)
        self._thread = threading.Thread(target=self._runner.run, name="desk-read-model", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._runner is not None:
            self._runner.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _chain(self, _offsets: Offsets, assignment: Assignment) -> ProcessingStep[Message]:
        return _Apply(self.book, self.topics, assignment.high, resolver_from_settings(self.settings))


class _Apply(LastStep[Message]):
    """Apply each record; tell when the backlog present at the start was read."""

    def __init__(self, book: DeskBook, topics: Topics, high: Mapping[tuple[str, int], int],
                 resolver: Any) -> None:
        self.book = book
        self.topics = topics
        self.resolver = resolver
        self.high = dict(high)
        self.behind = {tp for tp, end in high.items() if end > 0}
        if not self.behind:
            book.caught_up.set()

    def submit(self, item: Message) -> None:
        apply_bytes(self.book, self.topics, item.topic, item.value, self.resolver)
        key = (item.topic, item.partition)
        if key in self.behind and item.offset + 1 >= self.high[key]:
            self.behind.discard(key)
            if not self.behind:
                self.book.caught_up.set()
