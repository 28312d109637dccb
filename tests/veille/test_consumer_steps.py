"""The consumer runtime's step interface on the sink's chain, without a broker: backpressure
(a failing write holds its batch, the next one is held, messages are refused), offsets committed
only after the write and in order, never past a batch given up. The runner itself, on the real
broker: tests/sinks/test_sink_pipeline.py (failing store, fencing, revocation, restarts)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, cast

import pytest
from confluent_kafka import TopicPartition

from veille.consumer import MessageRejected
from veille.kafka import Message
from veille.sinks.batching import Batch, Batcher
from veille.sinks.steps import Batching, CommitOffsets, Decode, Decoded, RetryPolicy, Stats, WriteWithRetry

NO_WAIT = RetryPolicy(initial=0.0, multiplier=1.0, maximum=0.0)


class FakeOffsets:
    def __init__(self) -> None:
        self.commits: list[list[tuple[str, int, int]]] = []
        self.lag_reports = 0

    def commit(self, offsets: Sequence[TopicPartition]) -> bool:
        self.commits.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])
        return True

    def report_lag(self) -> None:
        self.lag_reports += 1


class FlakyWrite:
    """Fails while ``failing`` is set; records what it wrote."""

    def __init__(self) -> None:
        self.failing = True
        self.written: list[int] = []  # messages per batch written

    def write(self, batch: Batch) -> dict[str, int]:
        if self.failing:
            raise RuntimeError("store down")
        self.written.append(batch.messages)
        return {"incidents": batch.messages}


def _chain(write: FlakyWrite, rows: int = 2) -> tuple[Batching, FakeOffsets, Stats]:
    offsets, stats = FakeOffsets(), Stats()
    commit = CommitOffsets(offsets, stats)
    retried = WriteWithRetry(cast(Any, write), commit, offsets, NO_WAIT, stats)
    return Batching(Batcher(rows, 60.0), retried), offsets, stats


def _item(offset: int) -> Decoded:
    row = {"id": offset, "reported_at": time.time() * 1000}  # what sinks/rows.py makes of a routed incident
    return Decoded(Message("t", 0, offset, None, b""), cast(Any, row))


def test_a_failing_write_holds_its_batch_then_the_next_then_refuses() -> None:
    write = FlakyWrite()
    batching, offsets, stats = _chain(write)
    for i in range(2):  # batch 1 (full): its write fails, it stays in WriteWithRetry
        batching.submit(_item(i))
    assert stats.write_failures == 1 and offsets.lag_reports == 1 and offsets.commits == []
    for i in range(2, 4):  # batch 2: full, refused by the retrying step, held by Batching
        batching.submit(_item(i))
    with pytest.raises(MessageRejected):
        batching.submit(_item(4))  # the runner pauses and submits it again later
    write.failing = False
    batching.poll()  # the retry is due (no wait): batch 1 written and committed, batch 2 handed on
    batching.poll()
    assert write.written == [2, 2]
    assert offsets.commits == [[("t", 0, 2)], [("t", 0, 4)]]  # in order, each after its write
    batching.submit(_item(4))  # taken now
    assert stats.batches_committed == 2


def test_nothing_is_committed_past_a_batch_given_up() -> None:
    write = FlakyWrite()
    batching, offsets, stats = _chain(write)
    for i in range(4):
        batching.submit(_item(i))
    batching.close()
    batching.join(timeout=1.0)  # stopping: three attempts in all, then given up
    assert stats.batches_dropped == 2 and offsets.commits == []  # batch 2 not committed past batch 1


def test_decode_refused_downstream_is_not_decoded_or_counted_twice() -> None:
    class Refusing:
        def __init__(self) -> None:
            self.refuse = True
            self.taken: list[Decoded] = []

        def submit(self, item: Decoded) -> None:
            if self.refuse:
                raise MessageRejected()
            self.taken.append(item)

        def poll(self) -> None: ...
        def join(self, timeout: float | None = None) -> None: ...
        def close(self) -> None: ...

    class Limit:
        recorded = 0

        def record(self, invalid: bool) -> None:
            self.recorded += 1

    nxt, limit, stats = Refusing(), Limit(), Stats()
    decode = Decode(nxt, None, NO_WAIT, stats, cast(Any, limit))
    msg = Message("t", 0, 0, None, b"not avro")
    with pytest.raises(MessageRejected):
        decode.submit(msg)
    nxt.refuse = False
    decode.submit(msg)  # the same message again, as the runner does
    assert limit.recorded == 1 and stats.messages == 1
    (taken,) = nxt.taken
    assert taken.message is msg and taken.item.reason == "unknown_format"  # type: ignore[union-attr]
