"""faust's Kafka transport handing the router's agent one stream event per fetched record batch.

faust turns every fetched record into a ``ConsumerMessage``, decodes it through the conductor
into an ``Event``, queues it, iterates it through the stream, and acks it under a lock: about
85 CPU µs per record on this machine, more than the router's own work. Here the consumer's
drain loop takes aiokafka's fetched records per topic-partition and hands each run of up to
``BATCH_RECORDS_MAX`` of them over as *one* :class:`RecordBatch` message: a ``ConsumerMessage``
whose ``offset`` is its last record's, whose ``records`` are the raw records (bytes, keys,
offsets, topic-partition). That message takes faust's ordinary path (the conductor, flow
control, the stream's buffer, generation checks after a rebalance), once per batch.

faust still owns assignment, revocation, commits and the producer. Acking a ``RecordBatch``
(``Stream.ack`` → ``Consumer.ack``) records every offset from its first to its last in faust's
per-partition bookkeeping (``_acked``/``_acked_index``, only offsets at or past the committed
one, as faust does for one message): faust's committer then commits up to the first offset
not acked, exactly as if each record had been acked alone. Offsets missing inside a batch are
records Kafka did not return (compaction, transaction markers): covered like faust's gaps.

The faust internals this relies on (``_wait_next_records``, ``_read_offset``, ``_add_gap``,
``_acked``, ``_acked_index``, ``_committed_offset``, ``_n_acked``, ``_unacked_messages``,
``_waiting_for_ack``, ``perform_seek``) are pinned with faust-streaming 0.15.3 and checked by
``tests/streams/test_batch_transport.py``.

Used as the ``veille-batch://`` broker scheme (entry point ``faust.transports``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, ConsumerMessage, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from veille.streams import transport

SCHEME = "veille-batch"
BATCH_RECORDS_MAX = 500  # records per stream event: bounds a batch's latency and its isolation pass
STREAM_BUFFER_BATCHES = 8  # faust's stream_buffer_maxsize for these events: 4,000 records queued at most


class RecordBatch(ConsumerMessage):
    """Records of one topic-partition fetched together, as one faust message.

    ``offset`` is the last record's (faust's read offset and sensors see the batch's end);
    ``first_offset`` the first's. ``records`` are aiokafka's ``ConsumerRecord``s."""

    __slots__ = ("first_offset", "records")

    def __init__(self, tp: TP, records: Sequence[Any], generation_id: int | None) -> None:
        last = records[-1]
        timestamp = last.timestamp / 1000.0 if last.timestamp is not None else None
        super().__init__(tp.topic, tp.partition, last.offset, timestamp,  # type: ignore[arg-type]
                         last.timestamp_type, None, None, b"", None, 0,
                         sum(r.serialized_value_size for r in records), tp,
                         generation_id=generation_id)
        self.first_offset: int = records[0].offset
        self.records: Sequence[Any] = records


class Consumer(transport.Consumer):
    _n_acked: int  # faust's count of acks since its last commit (a class default of 0 there)

    async def _drain_messages(self, fetcher: Any) -> None:
        # faust's loop (transport/consumer.py) with its per-record steps done per batch.
        callback = self.callback
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        try:
            while not (self._stopped.is_set() or fetcher._stopped.is_set()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetched, active, generation_id = await self._fetch()
                await self.sleep(0)
                if self.should_stop:
                    continue
                for tp, records in fetched.items():
                    if not self.flow_active or self.app.consumer_generation_id != generation_id:
                        break  # a rebalance began: faust's getmany stops here too
                    if active is not None and tp not in active and tp not in self._buffered_partitions:
                        continue
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    last = read_offset[tp]
                    if last is not None and records[0].offset < last:
                        # faust keeps a record at or past its read offset (after a seek, the
                        # read offset is the next one to read) and drops the others.
                        records = [r for r in records if r.offset >= last]
                    if not records:
                        continue
                    first = records[0].offset
                    if last and first - last > 1 and acks_enabled_for(tp.topic):
                        await self._add_gap(tp, last + 1, first)
                    for start in range(0, len(records), BATCH_RECORDS_MAX):
                        batch = RecordBatch(tp, records[start:start + BATCH_RECORDS_MAX], generation_id)
                        if self._commit_every is not None and self._n_acked >= self._commit_every:
                            self._n_acked = 0
                            await self.commit()
                        if self.can_hand_over_inline(tp):
                            await callback(batch)
                        else:
                            await self.wait_first(callback(batch), self.suspend_flow.wait())
                        read_offset[tp] = batch.offset
                        await asyncio.sleep(0)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
            self.log.info("Broker stopped consumer, shutting down...")
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise
            self.log.info("Consumer shutting down for user cancel.")
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _fetch(self) -> tuple[dict[TP, list[Any]], set[TP] | None, int]:
        """aiokafka's fetched records by partition, as faust's ``getmany`` gets them (without
        making a message of each): nothing while flow is stopped, after seeking back."""
        records, active = await self._wait_next_records(1.0)
        generation_id = self.app.consumer_generation_id
        if not records or self.should_stop:
            return {}, active, generation_id
        if not self.flow_active:
            try:
                await self.perform_seek()
            except Exception as exc:
                self.log.warning(f"exception performing seek when flow not active {exc}")
            return {}, active, generation_id
        return records, active, generation_id

    def ack(self, message: Message) -> bool:
        """faust's ``Consumer.ack`` for a :class:`RecordBatch`: every offset it spans, at once."""
        if not isinstance(message, RecordBatch):
            return super().ack(message)
        with ack_lock:
            if message.acked:
                return False
            message.acked = True
            tp = message.tp
            try:
                self._unacked_messages.discard(message)
                if not self.app.topics.acks_enabled_for(message.topic):
                    return False
                committed = self._committed_offset[tp]
                start = message.first_offset if committed is None else max(message.first_offset, committed)
                acked_index = self._acked_index[tp]
                fresh = [o for o in range(start, message.offset + 1) if o not in acked_index]
                if not fresh:
                    return False
                acked_index.update(fresh)
                self._acked[tp].extend(fresh)
                self._n_acked += len(fresh)
                return True
            finally:
                notify(self._waiting_for_ack)


class Transport(transport.Transport):
    Consumer: ClassVar[type[faust_aiokafka.Consumer]] = Consumer


def broker_url(bootstrap: str) -> str:
    """faust's ``broker`` setting for a bootstrap list, through this transport."""
    return f"{SCHEME}://{bootstrap}"
