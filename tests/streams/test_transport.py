"""The faust transport the router runs on: a message goes to its stream inline only when that
cannot block (streams/transport.py). The router's Kafka tests run every rebalance and fault
through it; here, the decision itself, on faust's own objects (no broker needed)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import faust
import pytest
from faust.transport._cython.conductor import ConductorHandler
from faust.types import TP

from veille.streams.transport import Consumer, Transport, broker_url


@pytest.fixture
def app() -> Iterator[faust.App]:
    # Nothing connects: faust builds its consumer and conductor lazily, without a broker.
    yield faust.App("test-transport", broker=broker_url("127.0.0.1:1"), store="memory://",
                    stream_buffer_maxsize=2)


def test_the_router_s_scheme_selects_this_transport(app: faust.App) -> None:
    assert isinstance(app.transport, Transport)
    assert isinstance(app.consumer, Consumer)


def test_inline_only_when_nothing_can_block(app: faust.App) -> None:
    consumer = app.consumer
    assert isinstance(consumer, Consumer)
    tp = TP("incidents", 0)
    conductor: Any = app.topics  # its handlers by partition are faust's private state
    topic = app.topic("incidents")
    app.flow_control.resume()  # as faust does once partitions are assigned

    assert not consumer.can_hand_over_inline(tp), "no stream reads this partition yet"
    conductor._tp_to_callback[tp] = ConductorHandler(conductor, tp, {topic})
    assert consumer.can_hand_over_inline(tp)

    topic.queue.put_nowait("a")
    topic.queue.put_nowait("b")
    assert not consumer.can_hand_over_inline(tp), "the stream's buffer is full"
    topic.queue.get_nowait()
    assert consumer.can_hand_over_inline(tp)

    app.flow_control.suspend()
    assert not consumer.can_hand_over_inline(tp), "flow suspended (a rebalance)"
    app.flow_control.resume()
    consumer.suspend_flow.set()
    assert not consumer.can_hand_over_inline(tp), "the consumer suspended its flow"
    consumer.suspend_flow.clear()
    assert consumer.can_hand_over_inline(tp)


def test_inline_not_while_the_partitions_change_hands(app: faust.App) -> None:
    consumer = app.consumer
    assert isinstance(consumer, Consumer)
    tp = TP("incidents", 0)
    conductor: Any = app.topics  # its handlers by partition are faust's private state
    app.flow_control.resume()
    conductor._tp_to_callback[tp] = ConductorHandler(conductor, tp, {app.topic("incidents")})

    async def during_an_assignment() -> bool:
        async with conductor._tp_to_callback_lock:  # held while faust updates the assignment
            return consumer.can_hand_over_inline(tp)

    assert not asyncio.run(during_an_assignment())
    assert consumer.can_hand_over_inline(tp)


class _Node:
    def __init__(self, node_id: int) -> None:
        self.nodeId = node_id


class _Cluster:
    """What faust reads of aiokafka's client to create a topic: known nodes, and a send that
    fails for a dead one (the connection error aiokafka raises)."""

    def __init__(self, alive: set[int], known: list[int]) -> None:
        self.alive, self.known, self.asked = alive, known, []  # type: list[int]

    def brokers(self) -> set[_Node]:
        return {_Node(n) for n in self.known}

    @property
    def cluster(self) -> _Cluster:
        return self

    async def send(self, node_id: int, request: Any) -> Any:
        self.asked.append(node_id)
        if node_id not in self.alive:
            from aiokafka.errors import KafkaConnectionError

            raise KafkaConnectionError(f"node {node_id} is down")
        return type("Response", (), {"controller_id": 3})()


def test_topics_are_created_through_a_node_that_answers(app: faust.App) -> None:
    transport = app.transport
    assert isinstance(transport, Transport)
    client = _Cluster(alive={2, 3}, known=[1, 2, 3])  # node 1 died; the metadata still names it

    async def ask() -> None:
        assert await transport._get_controller_node(app, client, timeout=5) == 2
        assert client.asked == [1, 2]
        with pytest.raises(Exception, match="no Kafka node answered"):
            await transport._get_controller_node(app, _Cluster(alive=set(), known=[1, 2]), timeout=5)

    asyncio.run(ask())


def test_faust_still_creates_topics_through_the_controller_lookup() -> None:
    """The override above is used only while faust asks ``_get_controller_node`` for the node
    its ``CreateTopics`` goes to: fail loudly if a faust upgrade changes that."""
    import inspect

    from faust.transport.drivers import aiokafka as faust_aiokafka

    source = inspect.getsource(faust_aiokafka.Transport._really_create_topic)
    assert "self._get_controller_node(" in source
    assert "client.send(controller_node, request)" in source
