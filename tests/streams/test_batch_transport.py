"""The router's batch transport (streams/batch_transport.py): one faust message per fetched
record batch, acked through faust's own per-partition bookkeeping. Here the bookkeeping and the
faust internals it re-implements, on faust's own objects (no broker needed); the router's
Kafka tests (tests/streams/test_router_kafka.py, tests/hub/) run every rebalance, crash and
restart through it."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import faust
import pytest
from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP

from veille.streams.agent import record_batches
from veille.streams.batch_transport import Consumer, RecordBatch, Transport, broker_url

TOPIC = "incidents"
TP0 = TP(TOPIC, 0)


@dataclass
class _Record:
    """What the transport reads of aiokafka's ConsumerRecord."""

    offset: int
    topic: str = TOPIC
    partition: int = 0
    key: bytes | None = None
    value: bytes = b"x"
    timestamp: int | None = 1_700_000_000_000
    timestamp_type: int = 0
    serialized_value_size: int = 1


def _batch(first: int, last: int, skip: frozenset[int] = frozenset()) -> RecordBatch:
    return RecordBatch(TP0, [_Record(o) for o in range(first, last + 1) if o not in skip], generation_id=1)


@pytest.fixture
def app() -> Iterator[faust.App]:
    # Nothing connects: faust builds its consumer lazily, without a broker.
    yield faust.App("test-batch-transport", broker=broker_url("127.0.0.1:1"), store="memory://")


@pytest.fixture
def consumer(app: faust.App) -> Consumer:
    consumer = app.consumer
    assert isinstance(consumer, Consumer)
    # faust acks only topics an agent reads with acks on; the router's sources are those.
    app.topics.acking_topics.add(TOPIC)
    return consumer


def test_the_batch_scheme_selects_this_transport(app: faust.App) -> None:
    assert isinstance(app.transport, Transport)
    assert isinstance(app.consumer, Consumer)


def test_a_batch_is_a_message_at_its_last_offset() -> None:
    batch = _batch(10, 14)
    assert (batch.tp, batch.first_offset, batch.offset) == (TP0, 10, 14)
    assert [r.offset for r in batch.records] == [10, 11, 12, 13, 14]
    assert batch.value == b"" and batch.key is None, "faust's raw codec decodes it without error"


def test_acking_a_batch_commits_past_its_last_record(consumer: Consumer) -> None:
    consumer._committed_offset[TP0] = 10
    batch = _batch(10, 509)
    assert consumer.ack(batch)
    assert consumer._n_acked == 500
    assert consumer._new_offset(TP0) == 510
    assert not consumer.ack(batch), "a batch is acked once"


def test_never_past_a_batch_not_acked(consumer: Consumer) -> None:
    """Acks of a later batch never carry the commit over an earlier batch still in flight."""
    consumer._committed_offset[TP0] = 0
    first, second, third = _batch(0, 99), _batch(100, 199), _batch(200, 299)
    consumer.ack(first)
    consumer.ack(third)
    assert consumer._new_offset(TP0) == 100
    consumer._committed_offset[TP0] = 100
    assert consumer._new_offset(TP0) is None, "offsets 100-199 are not durable yet"
    consumer.ack(second)
    assert consumer._new_offset(TP0) == 300


def test_offsets_kafka_did_not_return_are_covered(consumer: Consumer) -> None:
    """Compaction and transaction markers leave holes inside a fetched run: they must not
    hold the commit back (faust covers them with gaps, message by message)."""
    consumer._committed_offset[TP0] = 0
    consumer.ack(_batch(0, 9, skip=frozenset({3, 4, 7})))
    assert consumer._new_offset(TP0) == 10


def test_only_offsets_at_or_past_the_committed_one_count(consumer: Consumer) -> None:
    consumer._committed_offset[TP0] = 50
    consumer.ack(_batch(40, 59))
    assert sorted(consumer._acked[TP0]) == list(range(50, 60))
    assert consumer._n_acked == 10


def test_an_acked_batch_is_no_longer_pending(consumer: Consumer) -> None:
    """faust waits for its unacked messages before a rebalance completes (wait_empty)."""
    batch = _batch(0, 9)
    consumer.track_message(batch)
    assert batch in consumer.unacked
    consumer.ack(batch)
    assert batch not in consumer.unacked


# The faust code the batch transport re-implements or feeds, as it was when the transport was
# written (faust-streaming 0.15.3, pinned in pyproject.toml). A change in any of them may
# change what an ack or a fetch means: re-read it against streams/batch_transport.py, then
# update the digest.
PINNED = {
    "_drain_messages": "44a2500309e83c63",  # its loop, re-written per batch
    "ack": "5fcf41cf45153475",  # its bookkeeping, re-written per batch
    "getmany": "4b168d84882a70d6",  # its checks per fetch (flow, generation, active partitions)
    "_new_offset": "1d2c7ea89a7ad4f1",  # reads _acked/_gap/_committed_offset to commit
    "_wait_next_records": "6218e1969a636b3f",  # called directly
    "_add_gap": "4df2573ded7c1c2c",  # called directly
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_faust_internals_are_those_the_transport_was_written_against(name: str) -> None:
    source = inspect.getsource(getattr(FaustConsumer, name))
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == PINNED[name], (
        f"faust's Consumer.{name} changed: check streams/batch_transport.py against it")


def test_faust_state_the_transport_uses_still_exists(consumer: Consumer) -> None:
    for attribute in ("_read_offset", "_acked", "_acked_index", "_committed_offset", "_gap",
                      "_unacked_messages", "_buffered_partitions", "_commit_every", "_n_acked"):
        assert hasattr(consumer, attribute), attribute
    assert callable(consumer.perform_seek)


class _Event:
    def __init__(self, message: Any) -> None:
        self.message = message


class _Stream:
    """What ``record_batches`` reads of a faust stream: its iteration, its current event and its
    channel's queue (a real asyncio queue, fed as the conductor feeds it)."""

    def __init__(self) -> None:
        self.enable_acks = True
        self.channel = type("Channel", (), {})()
        self.channel.queue = asyncio.Queue()
        self.current_event: _Event | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            self.current_event = await self.channel.queue.get()
            yield b""


def _collect(feed: Callable[[_Stream], Awaitable[None]], count: int, max_records: int = 1000,
             within: float = 0.05) -> list[list[int]]:
    async def run() -> list[list[int]]:
        stream = _Stream()
        feeder = asyncio.ensure_future(feed(stream))
        out: list[list[int]] = []
        async for events, messages in record_batches(stream, max_records, within):
            assert len(events) >= 1 and not stream.enable_acks, "acks are manual"
            out.append([m.offset for m in messages])
            if len(out) == count:
                break
        await feeder
        return out

    return asyncio.run(run())


def test_the_agent_gathers_batches_arriving_together() -> None:
    async def feed(stream: _Stream) -> None:
        for first in (0, 10, 20):
            stream.channel.queue.put_nowait(_Event(_batch(first, first + 9)))
            await asyncio.sleep(0)

    assert _collect(feed, 1) == [list(range(30))]


def test_a_backlog_fills_a_batch_without_waiting() -> None:
    async def feed(stream: _Stream) -> None:
        for first in range(0, 1000, 250):
            stream.channel.queue.put_nowait(_Event(_batch(first, first + 249)))

    batches = _collect(feed, 2, max_records=500, within=3600)
    assert batches == [list(range(500)), list(range(500, 1000))]


def test_a_quiet_stream_ends_a_batch_at_the_deadline() -> None:
    async def feed(stream: _Stream) -> None:
        stream.channel.queue.put_nowait(_Event(_batch(0, 4)))
        await asyncio.sleep(0.3)
        stream.channel.queue.put_nowait(_Event(_batch(5, 9)))

    assert _collect(feed, 2, within=0.05) == [list(range(5)), list(range(5, 10))]


def test_the_agent_refuses_anything_but_record_batches() -> None:
    async def feed(stream: _Stream) -> None:
        stream.channel.queue.put_nowait(_Event(object()))

    with pytest.raises(TypeError, match="record batch"):
        _collect(feed, 1)
