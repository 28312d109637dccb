"""A batch's incidents read and routed stage by stage, before the router takes each message.

``Router.process`` handles one message from its bytes to its outputs: decode, check, dedupe,
route, encode, then the next message. Profiled on batches, every stage ran with the others'
code and data in between, each message paying for cold caches; reading a whole batch first,
then routing it, then encoding message by message cost ~15 % less per message (issue 26).

Only what is a pure function of one message is staged (decoding and checking an incident,
routing it); de-duplication, the outputs and every decision about the message stay in
``Router.process``, in message order. A stage that raises keeps the exception, and
``take`` raises it again when that message's turn comes, so each message gets the outcome it
got before (the same dead letter, the same wait for the schema registry). A message that was
not staged (handled alone, retried) is read as it comes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from veille.kafka import Message

V = TypeVar("V")  # what reading a message gives (the incident)
D = TypeVar("D")  # what routing it gives (the decision)


class Staged(Generic[V, D]):
    def __init__(self) -> None:
        # id(message) -> (message, its value or the exception reading raised, its decision or
        # the exception routing raised). The message is kept: its id cannot be reused meanwhile.
        self._entries: dict[int, tuple[Message, V | Exception, D | Exception | None]] = {}

    def stage(self, messages: Sequence[Message], read: Callable[[Message], V],
              route: Callable[[V], D]) -> None:
        """Read then route ``messages``, forgetting what an earlier batch left untaken."""
        entries: dict[int, tuple[Message, V | Exception, D | Exception | None]] = {}
        values: list[tuple[Message, V]] = []
        for msg in messages:
            try:
                values.append((msg, read(msg)))
            except Exception as exc:  # raised again by take(), at this message's turn
                entries[id(msg)] = (msg, exc, None)
        for msg, value in values:
            decision: D | Exception
            try:
                decision = route(value)
            except Exception as exc:
                decision = exc
            entries[id(msg)] = (msg, value, decision)
        self._entries = entries

    def take(self, msg: Message, read: Callable[[Message], V]) -> tuple[V, D | Exception | None]:
        """``msg`` read (staged, or now) and its staged decision (None: route it now; an
        exception: what routing raised, for :func:`decided` to raise at routing's turn)."""
        entry = self._entries.pop(id(msg), None)
        if entry is None or entry[0] is not msg:
            return read(msg), None
        value = entry[1]
        if isinstance(value, Exception):
            raise value
        return value, entry[2]

    def clear(self) -> None:
        self._entries = {}


def decided(staged: D | Exception | None, route: Callable[[], D]) -> D:
    """The staged decision, or what routing raised, or the decision routed now."""
    if staged is None:
        return route()
    if isinstance(staged, Exception):
        raise staged
    return staged


__all__ = ["Staged", "decided"]
