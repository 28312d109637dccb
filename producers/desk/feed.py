"""Feeds the desk's read model from Kafka: a background consumer on the consumer runtime.

Read-all mode (``veille/consumer``: every partition from the beginning, no consumer group, no
committed offsets), like the Open311 read model: the book is rebuilt at each start, and the
topics' retention (30 days) bounds what a restarted intake shows. It reads the dispatch topic
of every agency of the territory (so the intake's principal needs READ on them, see
``veille/security.py``), ``<prefix>.routed`` and ``<prefix>.delivery``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from veille.config import Settings
from veille.consumer.follower import Follower
from veille.producers.desk.book import DeskBook
from veille.schemas import codec
from veille.schemas.models import CaseSplit, DeliveryReceipt, Dispatch, RoutedIncident, StatusUpdate
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
        self._follower = Follower(
            settings, self.names, "veille-desk",
            lambda m, resolver: apply_bytes(self.book, self.topics, m.topic, m.value, resolver),
            book.caught_up)

    def start(self) -> None:
        self._follower.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._follower.stop(timeout)
