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
