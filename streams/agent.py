"""The router's loop over batches, without faust: what the agent does with each batch it takes.

Per batch: messages whose earlier attempts failed are handled alone (``BatchHandler.handle``
isolates them); the others are *pipelined*: a batch is decided while the previous one waits
for Kafka's acknowledgements, then delivered once the previous one is durable, so acks stay in
order. A batch's events are acked only after its outputs are durable.

A batch that cannot be handled stops the process without acking anything of it (``stop``
exits): never let faust restart the agent behind our back, it would ack past the batch. The
attempt log then isolates the culprit on the next start.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from veille.deadletter import TooManyInvalid
from veille.kafka import Message
from veille.streams import metrics
from veille.streams.batch import BatchHandler, Prepared
from veille.streams.batch_transport import RecordBatch

EXIT_TOO_MANY_INVALID = 3
EXIT_BATCH_FAILED = 5
QUEUE_POLL_SECONDS = 0.002  # while a batch waits for more records

Ack = Callable[[Sequence[Any]], Awaitable[None]]  # acks a batch's events, in order
Stop = Callable[[int, str, BaseException], None]  # exits the process with a code and why


class RouteLoop:
    def __init__(self, handler: BatchHandler, ack: Ack, stop: Stop) -> None:
        self.handler = handler
        self.ack = ack
        self.stop = stop
        self._in_flight: asyncio.Task[None] | None = None
        self._in_flight_batch: Prepared | None = None

    async def take(self, events: Sequence[Any], messages: list[Message]) -> None:
        """One batch of source events (``messages``: what the router reads of each)."""
        started = time.perf_counter()
        try:
            if self.handler.needs_isolation(messages):
                await self._drain()
                await self.handler.handle(messages)
                await self.ack(events)
                metrics.PROGRESS.batch_done()
                return
            prepared = await self.handler.prepare(messages, self._in_flight_batch)
            if self._in_flight is not None:
                await self._in_flight
            self._in_flight_batch = prepared
            self._in_flight = asyncio.ensure_future(self._deliver(prepared, events, started))
        except TooManyInvalid as exc:
            # Nothing of this batch is acked: its offsets stay uncommitted.
            metrics.STOPPED_INVALID.inc()
            self.stop(EXIT_TOO_MANY_INVALID, "most of the stream is invalid", exc)
        except Exception as exc:
            metrics.BATCH_FAILURES.inc()
            self.stop(EXIT_BATCH_FAILED, f"a batch of {len(messages)} messages could not be handled", exc)

    async def _drain(self) -> None:
        if self._in_flight is not None:
            await self._in_flight
        self._in_flight = self._in_flight_batch = None

    async def _deliver(self, prepared: Prepared, events: Sequence[Any], started: float) -> None:
        try:
            await self.handler.deliver(prepared)
        except Exception as exc:
            metrics.BATCH_FAILURES.inc()
            self.stop(EXIT_BATCH_FAILED, f"a batch of {len(events)} messages could not be delivered", exc)
        await self.ack(events)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.PROGRESS.batch_done()


async def record_batches(stream: Any, max_records: int,
                         within: float) -> AsyncIterator[tuple[list[Any], list[Message]]]:
    """The agent's batches when each stream event is a :class:`RecordBatch`: what arrives
    within ``within`` seconds of a batch's first record, up to ``max_records`` (a backlog
    fills batches at once), with the router's view of each record. The same batches as
    ``noack_take(max_records, within)`` made of records one by one: the quarantine judges
    what arrives together (one source flooding, or every source at once). Acks are manual
    (``stream.ack`` of each event, after its outputs are durable)."""
    stream.enable_acks = False  # as faust's noack_take: nothing is acked behind our back
    queue = getattr(stream.channel, "queue", None)
    events: list[Any] = []
    messages: list[Message] = []
    deadline = 0.0
    async for _value in stream:
        event = stream.current_event
        batch = event.message
        if not isinstance(batch, RecordBatch):
            raise TypeError(f"expected a record batch from the transport, got {type(batch).__name__}")
        if not events:
            deadline = time.monotonic() + within
        events.append(event)
        messages.extend([Message(r.topic, r.partition, r.offset, r.key, r.value) for r in batch.records])
        # Nothing queued yet: wait for more until the deadline (the stream's iterator is not
        # interrupted to time out; its queue is looked at instead).
        while queue is not None and queue.empty() and len(messages) < max_records:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(left, QUEUE_POLL_SECONDS))
        if len(messages) >= max_records or queue is None or queue.empty():
            yield events, messages
            events, messages = [], []
