"""The grouping worker without Kafka: every cell's state in a dict, ``<prefix>.grouping`` a
FIFO queue. For the tests, the storm's expected numbers and the benchmarks; the faust worker
(``streams/grouping.py``) applies :class:`~veille.grouping.cases.Grouper` the same way."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable

from veille.grouping.cases import Grouper, State, member_of
from veille.grouping.envelope import decode
from veille.kafka import Output


class Replay:
    def __init__(self, grouper: Grouper) -> None:
        self.grouper = grouper
        self.topic = grouper.writer.topics.grouping
        self.states: dict[str, State] = {}
        self.queue: deque[Output] = deque()
        self.outputs: list[Output] = []  # everything but the grouping topic's records
        self.events: Counter[str] = Counter()

    def feed(self, outputs: Iterable[Output]) -> None:
        """Publish the router's outputs and run the grouping topic until it is empty."""
        for out in outputs:
            self._push(out)
        while self.queue:
            out = self.queue.popleft()
            assert out.key is not None
            cell = out.key.decode()
            decision = self.grouper.on_record(cell, self.states.get(cell), decode(out.value))
            if decision.write:
                self.states[cell] = decision.state
            self.events.update(decision.events)
            for o in decision.outputs:
                self._push(o)

    def _push(self, out: Output) -> None:
        (self.queue if out.topic == self.topic else self.outputs).append(out)

    def cases(self) -> dict[str, str]:
        """Report id -> case id over every cell (a report in two cases fails the assertion)."""
        found: dict[str, str] = {}
        for state in self.states.values():
            for report, case in member_of(state).items():
                assert report not in found, f"report {report} is in cases {found[report]} and {case}"
                found[report] = case
        return found


__all__ = ["Replay"]
