"""faust's Kafka transport (aiokafka), with a cheaper hand-over of each message to its stream.

faust's consumer hands every fetched message to its streams through
``wait_first(callback(message), suspend_flow.wait())``: four tasks and an ``asyncio.wait`` per
message, so that a hand-over that blocks (a stream buffer full, flow suspended for a rebalance)
can be abandoned when the consumer must stop or rebalance (faust-streaming issue #229). While
draining a backlog that was more than half of what faust costs per event: a bare agent
draining 60k incidents went from ~200 to ~85 CPU µs per event once the hand-over ran inline.

A hand-over that cannot block needs none of it. When nothing it could wait on is pending (no
rebalance under way, flow active, the partition's stream buffers have room, faust's producer
buffer has ebbed), the message is handed over inline; otherwise faust's own guarded path is
taken, unchanged. Either way the same messages reach the same streams in the same order.

Topic creation (faust declares its leader topic and tables' changelogs at start) asks the
first broker of its metadata for the controller's id and sends ``CreateTopics`` there: a router
started while one node of a three-node cluster was down exited 1 when either was the dead
node. On KRaft every broker forwards ``CreateTopics`` to the active controller (KIP-590), so
this transport sends it to the first node that answers.

Used as the ``veille://`` broker scheme (entry point ``faust.transports`` in pyproject.toml) by
the router with ``router_record_batches=false`` and by the bare agent it is measured against;
the router's default, ``veille-batch://`` (streams/batch_transport.py), builds on it.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest
from faust.exceptions import NotReady
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

SCHEME = "veille"
YIELD_EVERY = 100  # messages handed over between two turns of the event loop (as faust)


class Consumer(faust_aiokafka.Consumer):
    def can_hand_over_inline(self, tp: TP) -> bool:
        """Whether handing a message of ``tp`` to its streams cannot block (see the module)."""
        if self.suspend_flow.is_set() or not self.app.flow_control.is_active():
            return False
        conductor: Any = self.app.topics
        if conductor._tp_to_callback_lock.locked():
            return False
        # The compiled (Cython) handler names its channels; faust's pure-Python fallback is
        # a closure that does not: then the guarded path, always.
        channels = getattr(conductor._tp_to_callback.get(tp), "channels", None)
        if channels is None or any(channel.queue.full() for channel in channels):
            return False
        buffer = self.app.producer.buffer
        return bool(buffer.size <= buffer.max_messages)

    async def _drain_messages(self, fetcher: Any) -> None:
        # faust's loop (transport/consumer.py), except for the hand-over of each message.
        callback = self.callback
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        since_yield = 0
        try:
            while not (self._stopped.is_set() or fetcher._stopped.is_set()):
                self.diag.set_flag(CONSUMER_FETCHING)
                messages = self.getmany(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                async for tp, message in messages:
                    since_yield += 1
                    if since_yield > YIELD_EVERY:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    last = read_offset[tp]
                    if last is not None and offset < last:
                        continue  # read already (faust drops it the same way)
                    if last and offset - last > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, last + 1, offset)
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if self.can_hand_over_inline(tp):
                        await callback(message)
                    else:
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    read_offset[tp] = offset
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


class Transport(faust_aiokafka.Transport):
    Consumer: ClassVar[type[faust_aiokafka.Consumer]] = Consumer

    async def _get_controller_node(self, owner: Any, client: Any, timeout: int = 30000) -> int | None:
        """The node to send ``CreateTopics`` to: the first that answers a metadata request."""
        failures: list[str] = []
        for node_id in sorted(b.nodeId for b in client.cluster.brokers()):
            try:
                result = await owner.wait(client.send(node_id, MetadataRequest([])), timeout=timeout)
            except (TimeoutError, KafkaError, OSError) as exc:
                failures.append(f"{node_id}: {exc!r}")
                continue
            if result.stopped:
                return None
            return node_id
        raise NotReady(f"no Kafka node answered ({'; '.join(failures) or 'none known'})")


def broker_url(bootstrap: str) -> str:
    """faust's ``broker`` setting for a bootstrap list, through this transport."""
    return f"{SCHEME}://{bootstrap}"
