"""What becomes of a dispatch after routing: re-routing a refusal, escalating a missed deadline.

Pure (no Kafka, no faust): :class:`FollowUp` turns the records of ``<prefix>.routed`` and the
state of one incident into a new state and the outputs to publish; the faust worker
(``streams/escalation.py``) keeps the states in a table and calls it. Tested without a broker
in ``tests/escalation/test_followup.py``.

The state of an incident is a JSON value (the table's changelog holds it): where and what it
is (no personal data: the RoutedIncident has none), the bodies that refused it, and per
dispatch id its body, service, rule, hop count, deadlines (epoch ms), whether it was
acknowledged, closed, re-routed, and which of its deadlines were already escalated.

Records, in the order the partition holds them (all keyed by incident id):

* ``RoutedIncident``: the router's dispatches, with their deadlines (``response_deadlines``
  of the category and severity, from the report, as the console counts them).
* ``StatusUpdate`` (the router checked its dispatch id): anything beyond ``received``
  acknowledges; ``resolved`` and ``rejected`` close. ``rejected`` with ``not_competent`` or
  ``wrong_location`` re-routes (:func:`veille.territory.reroute.next_body`) once per refused
  dispatch; a refusal quoting a dispatch this state does not hold is ignored (counted).
* ``Redispatch``: a re-routing or an escalation, read back: what the timer published
  becomes state here (the timer cannot write the table, see streams/escalation.py).
* Cases (docs/grouping.md): a RoutedIncident v2's ``updates`` (bodies that received the report
  as an update of their dispatch of its case) get no deadline: they answer the case's
  dispatch, whose own incident holds its deadlines. They are remembered (``u``) so that a
  ``CaseSplit`` (the router checked its dispatch id) turns that update into a dispatch of its
  own, with deadlines from the report's time, category and severity. A split report is its
  own incident here: acknowledging the case's dispatch never acknowledges it.

Ids are deterministic keyed hashes: a re-routed dispatch's id is the router's own derivation
for (incident, body, service), so the new body answers it like any dispatch and the router
checks it as today; an escalation's id adds the missed deadline and the overdue dispatch's id.
Anything published twice (a replay, a restart between publishing and committing) carries the
same id: bodies and the store deduplicate on it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from veille.kafka import Output
from veille.schemas import codec
from veille.schemas.models import (
    CaseSplit,
    EventType,
    GeoPoint,
    IncidentCategory,
    IncidentStatus,
    Redispatch,
    RejectionReason,
    RoutedIncident,
    ServiceKind,
    Severity,
    StatusUpdate,
)
from veille.territory import Territory
from veille.territory.dispatch import dispatch_ref
from veille.territory.reroute import MAX_HOPS, next_body, supervisor_of, supervisor_service
from veille.topics import Topics

State = dict[str, Any]
Encode = Callable[[str, str, dict[str, Any]], bytes]  # (topic, record type, Avro value) -> bytes
REROUTE_REASONS = frozenset({RejectionReason.not_competent, RejectionReason.wrong_location})
ACKNOWLEDGING = frozenset({IncidentStatus.acknowledged, IncidentStatus.dispatched, IncidentStatus.on_site,
                           IncidentStatus.resolved, IncidentStatus.rejected})
CLOSING = frozenset({IncidentStatus.resolved, IncidentStatus.rejected})
DEADLINES = (("ack", "ack_due", "acked"), ("resolve", "res_due", "closed"))


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _time(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


@dataclass
class Result:
    """What one record did: the incident's new state (None: unchanged) and what to publish."""

    state: State | None = None
    outputs: list[Output] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)  # (metric, label) to count


@dataclass(frozen=True)
class Due:
    """An escalation to publish: ``key`` (incident, dispatch, deadline) marks it in flight."""

    key: tuple[str, str, str]
    outputs: list[Output]
    event: tuple[str, str]


class FollowUp:
    def __init__(self, territory: Territory, topics: Topics, *, dispatch_key: bytes, encode: Encode,
                 tolerance_ms: int, max_hops: int = MAX_HOPS,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.territory = territory
        self.topics = topics
        self.dispatch_key = dispatch_key
        self.encode = encode
        self.tolerance_ms = tolerance_ms
        self.max_hops = max_hops
        self.clock = clock

    # -- records -------------------------------------------------------------------
    def on_record(self, state: State | None, record_type: str, value: dict[str, Any],
                  partition: int) -> Result:
        if record_type == "RoutedIncident":
            return self._routed(state, RoutedIncident.from_avro(value), partition)
        if record_type == "StatusUpdate":
            return self._status(state, StatusUpdate.from_avro(value))
        if record_type == "Redispatch":
            return self._redispatch(state, Redispatch.from_avro(value), partition)
        if record_type == "CaseSplit":
            return self._split(state, CaseSplit.from_avro(value))
        return Result()  # alerts: broadcasts, nobody refuses or acknowledges them here

    def _deadlines(self, category: str, severity: str, start: int) -> tuple[int | None, int | None]:
        rule = self.territory.rules.deadline_for(IncidentCategory(category), Severity(severity))
        if rule is None:
            return None, None
        hour = 3_600_000
        return start + round(rule.acknowledge_hours * hour), start + round(rule.resolve_hours * hour)

    def _new_state(self, partition: int, municipality: str, category: str, severity: str,
                   location: GeoPoint | None, reported: int, occurred: int | None = None,
                   channel: str = "agency") -> State:
        return {"p": partition, "m": municipality, "c": category, "s": severity,
                "loc": None if location is None else [location.lat, location.lon], "rep": reported,
                "occ": reported if occurred is None else occurred, "ch": channel, "refused": [], "d": {}}

    def _entry(self, agency: str, service: str, rule: str, hop: int, start: int | None,
               state: State, escalation: bool = False) -> dict[str, Any]:
        ack, res = None, None
        if not escalation and start is not None:
            ack, res = self._deadlines(state["c"], state["s"], start)
        return {"a": agency, "s": service, "r": rule, "hop": hop, "esc": escalation, "ack_due": ack,
                "res_due": res, "acked": False, "closed": False, "next": False, "done": []}

    def _routed(self, state: State | None, rec: RoutedIncident, partition: int) -> Result:
        incident = str(rec.id)
        start = None  # the report's time; a body a later routing adds (a case raised) from then
        if state is None:
            state = self._new_state(partition, rec.municipality, rec.category.value, rec.severity.value,
                                    rec.location, ms(rec.reported_at), ms(rec.occurred_at), rec.channel.value)
        else:
            start = max(state["rep"], ms(rec.routed_at))
        for t in rec.dispatches:
            did = dispatch_ref(self.dispatch_key, EventType.incident, incident, t.agency_id, t.service)
            if did not in state["d"]:  # a replayed routing changes nothing already known
                state["d"][did] = self._entry(t.agency_id, t.service.value, t.rule, 0,
                                              state["rep"] if start is None else start, state)
        for t in rec.updates:  # no deadline: the body answers its dispatch of the case
            did = dispatch_ref(self.dispatch_key, EventType.incident, incident, t.agency_id, t.service)
            state.setdefault("u", {})[did] = [t.agency_id, t.service.value, t.rule]
        return Result(state)

    def _split(self, state: State | None, split: CaseSplit) -> Result:
        """The body's update of this report becomes a dispatch of its own, with its deadlines."""
        did = str(split.dispatch_id)
        if state is None:  # its routing record is older than the table: nothing to time it from
            return Result(events=[("split", "unknown_report")])
        if did in state["d"]:
            return Result(events=[("split", "already")])  # a replayed split, or a dispatch already
        update = state.get("u", {}).get(did)
        rule = update[2] if update is not None else "case_split"
        state["d"][did] = self._entry(split.agency_id, split.service.value, rule, 0, state["rep"], state)
        return Result(state, events=[("split", "split" if update is not None else "not_an_update")])

    def _status(self, state: State | None, u: StatusUpdate) -> Result:
        entry = None if state is None else state["d"].get(str(u.dispatch_id))
        if state is None or entry is None:
            why = "unknown_dispatch" if u.status == IncidentStatus.rejected else ""
            return Result(events=[("ignored", why)] if why else [])
        if u.status in ACKNOWLEDGING:
            entry["acked"] = True
        if u.status in CLOSING:
            entry["closed"] = True
        if u.status == IncidentStatus.reopened:
            entry["closed"] = False
        result = Result(state)
        if u.status != IncidentStatus.rejected:
            return result
        if u.reason not in REROUTE_REASONS:
            result.events.append(("ignored", "other_reason"))
            return result
        if entry["next"]:
            result.events.append(("ignored", "already_rerouted"))
            return result
        self._reroute(state, str(u.incident_id), str(u.dispatch_id), entry, u, result)
        return result

    def _reroute(self, state: State, incident: str, did: str, entry: dict[str, Any], u: StatusUpdate,
                 result: Result) -> None:
        if entry["a"] not in state["refused"]:
            state["refused"].append(entry["a"])
        entry["next"] = True
        loc = state["loc"]
        choice = next_body(self.territory, municipality=state["m"],
                           location=None if loc is None else GeoPoint(lat=loc[0], lon=loc[1]),
                           corrected=u.corrected_location, service=ServiceKind(entry["s"]), rule=entry["r"],
                           refused=state["refused"], hop=entry["hop"], max_hops=self.max_hops)
        if choice is None:
            result.events.append(("exhausted", ""))
            return
        target = choice.target
        new_id = dispatch_ref(self.dispatch_key, EventType.incident, incident, target.agency_id,
                              target.service)
        result.events.append(("rerouted", choice.step))
        if new_id in state["d"]:
            return  # that body already holds a dispatch of this incident for that service
        at = ms(u.at)
        state["d"][new_id] = self._entry(target.agency_id, target.service.value, target.rule, choice.hop, at,
                                         state)
        result.outputs += self._publish(state, incident, new_id, "rerouted", target.agency_id,
                                        target.service, target.rule, target.cross_boundary, choice.hop,
                                        did, entry["a"], (u.reason or RejectionReason.other).value,
                                        choice.step, at)

    def _redispatch(self, state: State | None, r: Redispatch, partition: int) -> Result:
        if state is None:  # its routing record is older than the table (a compacted-away past)
            state = self._new_state(partition, r.municipality, r.category, r.severity, None,
                                    ms(r.reported_at))
        did = str(r.id)
        if did not in state["d"]:
            escalation = r.kind == "escalated"
            state["d"][did] = self._entry(r.agency_id, r.service.value, r.rule, r.hop, ms(r.refused_at),
                                          state, escalation=escalation)
        previous = state["d"].get(str(r.previous_id))
        if r.kind == "escalated":
            if previous is not None and r.reason not in previous["done"]:
                previous["done"].append(r.reason)
        else:
            if previous is not None:
                previous["next"] = previous["closed"] = previous["acked"] = True
            if r.previous_agency_id not in state["refused"]:
                state["refused"].append(r.previous_agency_id)
        return Result(state)

    # -- deadlines -----------------------------------------------------------------
    def pending(self, state: State) -> list[tuple[str, str, int]]:
        """(dispatch id, deadline, due ms) not met, not escalated (escalations have none)."""
        out = []
        for did, entry in state["d"].items():
            for name, due_field, met in DEADLINES:
                due = entry[due_field]
                if due is not None and not entry[met] and name not in entry["done"]:
                    out.append((did, name, due))
        return out

    def due(self, incident: str, state: State, clock_ms: int) -> list[Due]:
        """Escalations whose deadline passed by more than the tolerance on ``clock_ms``."""
        found = []
        for did, name, due in self.pending(state):
            if clock_ms < due + self.tolerance_ms:
                continue
            entry = state["d"][did]
            service = ServiceKind(entry["s"])
            supervisor = supervisor_of(self.territory, entry["a"], service)
            if supervisor is None:
                found.append(Due((incident, did, name), [], ("no_supervisor", name)))
                continue
            svc = supervisor_service(self.territory, supervisor, service)
            new_id = dispatch_ref(self.dispatch_key, EventType.incident, f"{incident}/overdue:{name}/{did}",
                                  supervisor, svc)
            agency = self.territory.agencies[supervisor]
            cross = agency.home_municipality is not None and agency.home_municipality != state["m"]
            outputs = self._publish(state, incident, new_id, "escalated", supervisor, svc, f"overdue:{name}",
                                    cross, entry["hop"], did, entry["a"], name, None, due)
            found.append(Due((incident, did, name), outputs, ("escalated", name)))
        return found

    # -- outputs -------------------------------------------------------------------
    def _publish(self, state: State, incident: str, new_id: str, kind: str, agency: str, service: ServiceKind,
                 rule: str, cross: bool, hop: int, previous: str, previous_agency: str, reason: str,
                 step: str | None, refused_at: int) -> list[Output]:
        """The Dispatch exactly as the router makes one (the deliverer needs nothing else), and
        the Redispatch on the routed topic for the store and for this worker's own state."""
        now = self.clock()
        reported = _time(state["rep"])
        dispatch_topic = self.topics.dispatch(agency)
        dispatch = self.encode(dispatch_topic, "Dispatch", {
            "id": new_id, "event_type": EventType.incident.value, "event_id": incident, "agency_id": agency,
            "service": service.value, "rule": rule, "cross_boundary": cross, "municipality": state["m"],
            "category": state["c"], "severity": state["s"], "reported_at": reported, "routed_at": now,
            "payload": self.payload(incident, state)})
        record = self.encode(self.topics.routed, "Redispatch", {
            "id": new_id, "kind": kind, "incident_id": incident, "agency_id": agency,
            "service": service.value,
            "rule": rule, "cross_boundary": cross, "hop": hop, "previous_id": previous,
            "previous_agency_id": previous_agency, "reason": reason, "step": step,
            "municipality": state["m"], "category": state["c"], "severity": state["s"],
            "reported_at": reported, "refused_at": _time(refused_at), "routed_at": now})
        return [Output(dispatch_topic, incident.encode(), dispatch),
                Output(self.topics.routed, uuid.UUID(incident).bytes, record)]

    def payload(self, incident: str, state: State) -> bytes:
        """The Incident the new body receives: what the routing record holds of it. The worker
        never holds the original report (its contact and free text stay in the intake topic and
        the first dispatches): the new body gets the facts and the place (limit, see docs)."""
        loc = state["loc"]
        reported = _time(state["rep"])
        return codec.encode("Incident", {
            "id": incident, "municipality": state["m"], "category": state["c"], "severity": state["s"],
            "location": None if loc is None else {"lat": loc[0], "lon": loc[1]}, "address": None,
            "occurred_at": _time(state["occ"]), "reported_at": reported, "channel": state["ch"],
            "reporter": None,
            "description": "", "attachments": []})


__all__ = ["Due", "FollowUp", "Result", "State", "ms"]
