"""A read model's reader: whole topics, from the beginning, in a background thread.

The consumer runtime's read-all mode (no consumer group, no committed offsets): the read model
is rebuilt at each start and the topics' retention bounds what it holds. The Open311 read model,
the desk's and the notifier's case watch each own one. ``caught_up`` is set once every record
present at the start was applied: what a read model answers before that may be partial.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from veille.config import Settings
from veille.consumer.runner import Assignment, StreamRunner
from veille.consumer.steps import LastStep, Offsets, ProcessingStep
from veille.kafka import Message
from veille.schemas.registry import resolver_from_settings

# Applies one record (its topic and value; the schema resolver of the registry, or None).
Apply = Callable[[Message, Any], None]


class Follower:
    def __init__(self, settings: Settings, topics: Sequence[str], name: str, apply: Apply,
                 caught_up: threading.Event) -> None:
        self.settings = settings
        self.topics = list(topics)
        self.name = name  # the client id and the thread's name
        self.apply = apply
        self.caught_up = caught_up
        self._runner: StreamRunner | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._runner = StreamRunner(
            {**self.settings.kafka_client_config(), "group.id": f"{self.name}-{uuid.uuid4()}",
             "enable.auto.commit": False, "client.id": self.name},
            self.topics, self._chain, group=False)
        self._thread = threading.Thread(target=self._runner.run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._runner is not None:
            self._runner.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _chain(self, _offsets: Offsets, assignment: Assignment) -> ProcessingStep[Message]:
        return _Apply(self.apply, self.caught_up, assignment.high, resolver_from_settings(self.settings))


class _Apply(LastStep[Message]):
    """Apply each record; tell when the backlog present at the start was read."""

    def __init__(self, apply: Apply, caught_up: threading.Event, high: Mapping[tuple[str, int], int],
                 resolver: Any) -> None:
        self.apply = apply
        self.caught_up = caught_up
        self.resolver = resolver
        self.high = dict(high)
        self.behind = {tp for tp, end in high.items() if end > 0}
        if not self.behind:
            caught_up.set()

    def submit(self, item: Message) -> None:
        self.apply(item, self.resolver)
        key = (item.topic, item.partition)
        if key in self.behind and item.offset + 1 >= self.high[key]:
            self.behind.discard(key)
            if not self.behind:
                self.caught_up.set()
