"""An incident's overall state, and which of its changes a resident is told of: pure functions.

Three bodies acting on one incident send three acknowledgements; the resident hears once. The
notifier keeps, per incident, a :class:`Track` (the latest status of each body's dispatch and
how many times it was routed), folds every record of ``<prefix>.routed`` into it with
:func:`apply_routed` and :func:`apply_status`, and asks :func:`overall` what the incident's
state is now, and :func:`change` whether going from the last state told to this one is worth a
message. The rules:

* a body *acts* on the incident once it answered anything but a refusal; the incident is
  **resolved** when every body acting resolved it (a body that never answered holds nothing
  back), **on site** when one is, **acknowledged** when one is, else **transmitted**;
* a rejection as a duplicate closes the incident (**duplicate**); every dispatch rejected for
  another reason that does not re-route (no action needed, other) **closes** it; every dispatch
  rejected as not competent or at a wrong location is **awaiting a re-routing**, not told (the
  router sends the incident to the next body at once; the resident hears of that);
* a routing that brings a body not dispatched before is a new *generation*: the incident is
  **re-routed** (told once), and its state starts again from *transmitted*;
* nothing is told of the first routing (the resident got the reference when reporting), of a
  state already told, or of a step backwards within a generation other than a reopening.

Replays and re-deliveries are harmless: each body keeps its latest status by time, a routing
seen twice adds no body, so folding the same records again gives the same state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from veille.schemas.models import IncidentStatus, RejectionReason, RoutedIncident, StatusUpdate

REROUTING_REASONS = frozenset({RejectionReason.not_competent.value, RejectionReason.wrong_location.value})


class Phase(StrEnum):
    transmitted = "transmitted"
    acknowledged = "acknowledged"
    on_site = "on_site"
    resolved = "resolved"
    closed = "closed"
    duplicate = "duplicate"
    awaiting_reroute = "awaiting_reroute"


_WAITING = frozenset({IncidentStatus.received.value, IncidentStatus.dispatched.value})
TERMINAL = frozenset({Phase.resolved, Phase.closed, Phase.duplicate})
_RANK = {Phase.transmitted: 0, Phase.acknowledged: 1, Phase.on_site: 2, Phase.resolved: 3,
         Phase.closed: 3, Phase.duplicate: 3}


class Change(StrEnum):
    """What a message tells; its text is :mod:`veille.notify.messages`'."""

    acknowledged = "acknowledged"
    on_site = "on_site"
    resolved = "resolved"
    rerouted = "rerouted"
    closed = "closed"
    duplicate = "duplicate"
    reopened = "reopened"


@dataclass(frozen=True)
class State:
    phase: Phase
    generation: int

    def as_json(self) -> dict[str, Any]:
        return {"phase": self.phase.value, "generation": self.generation}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> State | None:
        return None if not data else cls(Phase(data["phase"]), int(data["generation"]))


@dataclass
class BodyStatus:
    status: str
    at: str  # ISO time of the status (a later one wins)
    reason: str | None = None


@dataclass
class Track:
    """What the notifier knows of one incident: no personal data (ids, statuses, times)."""

    bodies: dict[str, BodyStatus] = field(default_factory=dict)
    generation: int = 0
    closed_at: str | None = None  # when it reached a terminal state (UTC ISO), None while open
    category: str = ""
    municipality: str = ""
    # Grouping (veille/notify/cases.py): the case the report is in (its state is the case's) and
    # whether a body split it out (its own state again). Absent from entries written before.
    case_id: str | None = None
    split: bool = False

    def as_json(self) -> dict[str, Any]:
        out = {"bodies": {a: vars(b) for a, b in self.bodies.items()}, "generation": self.generation,
               "closed_at": self.closed_at, "category": self.category, "municipality": self.municipality}
        if self.case_id is not None:
            out |= {"case_id": self.case_id, "split": self.split}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Track:
        return cls({a: BodyStatus(**b) for a, b in data.get("bodies", {}).items()},
                   int(data.get("generation", 0)), data.get("closed_at"), data.get("category", ""),
                   data.get("municipality", ""), data.get("case_id"), bool(data.get("split", False)))


def apply_routed(track: Track, routed: RoutedIncident) -> None:
    track.category, track.municipality = routed.category.value, routed.municipality
    new = [d.agency_id for d in routed.dispatches if d.agency_id not in track.bodies]
    if not new:
        return  # a re-delivery, or a routing to bodies already dispatched
    # A re-routing (a refused report handed to another body) lists the new bodies only; a routing
    # that keeps every body and adds some (a case raised by its size brings the monitoring cell
    # in, docs/grouping.md) is no new generation: nobody let the report go, nothing to tell.
    if not track.bodies or not set(track.bodies) <= {d.agency_id for d in routed.dispatches}:
        track.generation += 1
    at = routed.routed_at.isoformat()
    for agency in new:
        track.bodies[agency] = BodyStatus(IncidentStatus.received.value, at)


def apply_status(track: Track, update: StatusUpdate) -> None:
    known = track.bodies.get(update.agency_id)
    at = update.at.isoformat()
    if known is not None and _time(at) < _time(known.at):
        return  # an older status
    # A body not seen routed (dispatched before the topic's retention): the router checked its
    # dispatch id before forwarding the update, so it is one of the incident's bodies.
    track.bodies[update.agency_id] = BodyStatus(
        update.status.value, at, update.reason.value if update.reason is not None else None)


def overall(track: Track) -> State:
    statuses = list(track.bodies.values())
    rejected = sorted((b for b in statuses if b.status == IncidentStatus.rejected.value),
                      key=lambda b: _time(b.at))
    waiting = [b for b in statuses if b.status in _WAITING]
    active = [b.status for b in statuses
              if b.status not in _WAITING and b.status != IncidentStatus.rejected.value]
    if any(b.reason == RejectionReason.duplicate.value for b in rejected):
        phase = Phase.duplicate
    elif not active and waiting:
        phase = Phase.transmitted
    elif not active:
        # The latest refusal decides: one the router re-routes on, or one that closes it.
        rerouting = not rejected or rejected[-1].reason in REROUTING_REASONS
        phase = Phase.awaiting_reroute if rerouting else Phase.closed
    elif all(s == IncidentStatus.resolved.value for s in active):
        phase = Phase.resolved
    elif IncidentStatus.on_site.value in active:
        phase = Phase.on_site
    elif {IncidentStatus.acknowledged.value, IncidentStatus.reopened.value,
          IncidentStatus.resolved.value} & set(active):
        phase = Phase.acknowledged
    else:
        phase = Phase.transmitted
    return State(phase, track.generation)


def change(told: State | None, now: State) -> Change | None:
    """The message going from the last state told (None: nothing yet) to ``now``, if any."""
    if now.phase is Phase.awaiting_reroute or now == told:
        return None
    if told is None:
        return None if now.phase is Phase.transmitted else Change(now.phase.value)
    if now.generation > told.generation:
        # A new body took it: say so once; a state it already reached by then is told next time.
        return Change.rerouted
    if told.phase in TERMINAL and now.phase not in TERMINAL:
        return Change.reopened
    if _RANK[now.phase] < _RANK.get(told.phase, 0) or now.phase is Phase.transmitted:
        return None
    return Change(now.phase.value)


def told_after(told: State | None, now: State, sent: Change | None) -> State | None:
    """The state to remember as told once ``sent`` went out (or when nothing was worth it)."""
    if now.phase is Phase.awaiting_reroute:
        return told
    if sent is Change.rerouted:
        return State(Phase.transmitted, now.generation)
    if sent is None and told is not None and _RANK.get(now.phase, 0) < _RANK.get(told.phase, 0) \
            and now.generation == told.generation and told.phase not in TERMINAL:
        return told  # never step back: a later, higher state is compared with the highest told
    return now


def _time(iso: str) -> datetime:
    return datetime.fromisoformat(iso)
