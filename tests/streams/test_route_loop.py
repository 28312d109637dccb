"""The router's loop over batches (streams/agent.py): batch N+1 is decided while batch N waits
for Kafka, and no event is acked before its own batch's outputs are durable, in order.

The handler here records what the loop asks of it and lets the test say when a delivery
completes (Kafka's acknowledgements); BatchHandler itself is tested against the broker."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from veille.kafka import Message
from veille.streams.agent import RouteLoop
from veille.streams.batch import Prepared
from veille.streams.dedup import DedupWindow


class RecordingHandler:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.durable: dict[str, asyncio.Event] = {}

    def needs_isolation(self, messages: list[Message]) -> bool:
        return False

    async def prepare(self, messages: list[Message], previous: Prepared | None = None) -> Prepared:
        self.log.append(f"prepare {_name(messages)}")
        return Prepared(messages, [], DedupWindow().batch(previous.seen if previous else None))

    async def deliver(self, prepared: Prepared) -> None:
        name = _name(prepared.messages)
        self.log.append(f"send {name}")
        await self.durable.setdefault(name, asyncio.Event()).wait()
        self.log.append(f"durable {name}")


def _name(messages: Sequence[Message]) -> str:
    return messages[0].topic


def _batch(name: str) -> list[Message]:
    return [Message(name, 0, i, None, b"") for i in range(3)]


def test_next_batch_is_decided_while_the_previous_waits_and_acks_follow_durability() -> None:
    async def scenario() -> list[str]:
        handler = RecordingHandler()
        log = handler.log

        async def ack(events: Sequence[Any]) -> None:
            log.append(f"ack {events[0]}")

        def stop(code: int, what: str, exc: BaseException) -> None:
            raise AssertionError(f"stopped: {what} {exc!r}")

        loop = RouteLoop(handler, ack, stop)
        # A loop that waited for a's delivery here would never return: fail, do not hang.
        await asyncio.wait_for(loop.take(["a"], _batch("a")), 5)
        await asyncio.sleep(0)  # batch a is being sent
        assert log == ["prepare a", "send a"]

        second = asyncio.ensure_future(loop.take(["b"], _batch("b")))
        await asyncio.sleep(0.01)
        # b is decided while a still waits for Kafka; nothing is acked yet.
        assert log == ["prepare a", "send a", "prepare b"]
        assert not second.done(), "b's delivery waits for a's: acks stay in order"

        handler.durable.setdefault("a", asyncio.Event()).set()
        await asyncio.wait_for(second, 5)
        await asyncio.sleep(0)
        assert log[3:] == ["durable a", "ack a", "send b"]

        handler.durable.setdefault("b", asyncio.Event()).set()
        await asyncio.wait_for(loop._drain(), 5)
        return log

    log = asyncio.run(scenario())
    assert log == ["prepare a", "send a", "prepare b", "durable a", "ack a", "send b", "durable b", "ack b"]
    # No event acked before its own batch was durable.
    for name in ("a", "b"):
        assert log.index(f"ack {name}") > log.index(f"durable {name}")
