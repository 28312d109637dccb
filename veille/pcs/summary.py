"""Per activated municipality, what the cascade achieved, from its events (pure): the counts
the console shows and the sink stores (never a name).

* representatives reached: distinct owners with at least one notification delivered;
* acknowledged: distinct owners whose watch was acknowledged (by them, a substitute, the cell);
* persons checked / needing help / absent: the latest check of each register entry;
* persons not reached: the register's persons of the reached owners (counts from
  :meth:`veille.pcs.register.Register.counts_by_representative`) minus those checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from veille.pcs import events
from veille.pcs.cascade import CELL


@dataclass
class TownSummary:
    municipality: str
    activations: set[str] = field(default_factory=set)
    reached: set[str] = field(default_factory=set)
    notified_owners: set[str] = field(default_factory=set)
    acknowledged: set[str] = field(default_factory=set)
    checks: dict[str, events.CheckStatus] = field(default_factory=dict)
    escalated_to_cell: int = 0

    def counts(self, registered: Mapping[str, int] | None = None) -> dict[str, int]:
        statuses = list(self.checks.values())
        expected = sum((registered or {}).get(o.split("/", 1)[1], 0) for o in self.notified_owners)
        checked = len(statuses)
        return {"activations": len(self.activations), "representatives_notified": len(self.notified_owners),
                "representatives_reached": len(self.reached),
                "representatives_acknowledged": len(self.acknowledged),
                "persons_checked": checked,
                "persons_ok": statuses.count(events.CheckStatus.seen),
                "persons_need_help": statuses.count(events.CheckStatus.needs_help),
                "persons_absent": statuses.count(events.CheckStatus.absent),
                "persons_not_reached": max(expected - checked, 0),
                "escalated_to_cell": self.escalated_to_cell}


def summarise(evs: Iterable[events.ActivationEvent | events.StepEvent | events.NotifiedEvent
                            | events.AckEvent | events.CheckEvent]) -> dict[str, TownSummary]:
    towns: dict[str, TownSummary] = {}
    town_of: dict[str, str] = {}
    for ev in evs:
        if isinstance(ev, events.ActivationEvent):
            town_of[ev.activation] = ev.municipality
            towns.setdefault(ev.municipality, TownSummary(ev.municipality)).activations.add(ev.activation)
            continue
        insee = town_of.get(ev.activation)
        if insee is None:
            continue
        t = towns[insee]
        key = f"{ev.activation}/"
        if isinstance(ev, events.NotifiedEvent):
            t.notified_owners.add(key + ev.owner)
            if ev.outcome == "delivered":
                t.reached.add(key + ev.owner)
            if ev.target == CELL:
                t.escalated_to_cell += 1
        elif isinstance(ev, events.AckEvent):
            t.acknowledged.add(key + ev.owner)
        elif isinstance(ev, events.CheckEvent):
            t.checks[key + ev.person] = ev.status
    return towns


__all__ = ["TownSummary", "summarise"]
