"""The sink's batches: consecutive decoded messages, closed by size (rows) or age (time)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import TopicPartition

from veille.kafka import Message
from veille.schemas.models import DeadLetter
from veille.sinks.rows import Row


@dataclass
class Batch:
    """Decoded records and dead letters of consecutive messages, with their offset ranges."""

    started: float
    records: list[Row] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    ranges: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    messages: int = 0

    def add(self, msg: Message, item: Row | DeadLetter) -> None:
        if isinstance(item, DeadLetter):
            self.dead_letters.append(item)
        else:
            self.records.append(item)
        key = (msg.topic, msg.partition)
        first, _ = self.ranges.get(key, (msg.offset, msg.offset))
        self.ranges[key] = (first, msg.offset)
        self.messages += 1

    def dedup_token(self, table: str) -> str:
        """Same messages → same token: a replayed batch is skipped by the store."""
        spans = ",".join(f"{t}:{p}:{first}-{last}"
                         for (t, p), (first, last) in sorted(self.ranges.items()))
        return f"{table}|{spans}"

    def commit_offsets(self) -> list[TopicPartition]:
        return [TopicPartition(t, p, last + 1) for (t, p), (_, last) in sorted(self.ranges.items())]


class Batcher:
    """Accumulates messages until ``max_rows`` messages or ``max_seconds`` since the first one."""

    def __init__(self, max_rows: int, max_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.max_rows = max(1, max_rows)
        self.max_seconds = max_seconds
        self._clock = clock
        self.batch: Batch | None = None

    def add(self, msg: Message, item: Row | DeadLetter) -> None:
        if self.batch is None:
            self.batch = Batch(started=self._clock())
        self.batch.add(msg, item)

    @property
    def empty(self) -> bool:
        return self.batch is None

    def full(self) -> bool:
        return self.batch is not None and self.batch.messages >= self.max_rows

    def ready(self) -> bool:
        b = self.batch
        return b is not None and (b.messages >= self.max_rows
                                  or self._clock() - b.started >= self.max_seconds)

    def remaining_seconds(self) -> float:
        return self.max_seconds if self.batch is None else \
            max(0.0, self.max_seconds - (self._clock() - self.batch.started))

    def take(self) -> Batch | None:
        batch, self.batch = self.batch, None
        return batch
