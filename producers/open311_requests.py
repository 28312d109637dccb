"""Read model of Open311 service requests: incidents and their lifecycle, kept in memory.

Fed by a background consumer of ``<prefix>.routed`` on the consumer runtime
(``veille/consumer``: every partition, from the beginning, no consumer group offsets): each
``RoutedIncident`` creates a request, each ``StatusUpdate`` (forwarded there by the router
once it checked the dispatch id) moves it on. Why not query the store, or a compacted topic:

* the embedded chDB store opens in one process only (the sink's), so the intake cannot read
  it; and a ClickHouse server is an optional deployment;
* ``routed`` is the hub's single source of truth, already free of personal data (no
  contact, no free-text note), and it carries exactly what Open311 shows;
* a compacted per-incident topic would keep only the latest record of a key and lose the
  creation record (category, municipality, requested time) behind the status updates.

What is kept per request: id, category, municipality, requested time, point, its status,
its time and agency, the first dispatch target, and the history of its overall state. The
status is the incident's *overall* state (``veille.notify.changes``: three bodies acknowledging
are one acknowledgement, resolved once every body acting resolved it, a re-routing), the same
the notifier tells residents of, so Open311, the tracking page (``/suivi/``) and the messages
agree; each body's latest status counts by the update's time, so a late re-delivery never moves
it back. With a reference function (``VEILLE_NOTIFY_REFERENCE_KEY``), requests are also found by
the reference given to residents (:meth:`RequestBook.by_reference`). Memory is bounded
(oldest requests evicted first); the topic's retention (30 days) bounds what a restarted
intake can show. A report grouped into a case (RoutedIncident v2 ``case_id``) answers with its
case's overall state, a report split out of its case with its own (``open311_cases``). The intake
also records the requests it has just accepted
(:meth:`RequestBook.submitted`) so the app that reported one can read it back before the
router's record arrives.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from veille.config import Settings
from veille.consumer.follower import Follower
from veille.notify import changes
from veille.notify.changes import BodyStatus, Phase, State, Track
from veille.producers import open311_cases
from veille.schemas import codec
from veille.schemas.models import CaseSplit, IncidentStatus, RoutedIncident, StatusUpdate
from veille.topics import ROUTED_TYPES, Topics

log = logging.getLogger(__name__)
CAPACITY = 500_000  # about 600 bytes each with their track: 300 MB at most
# The overall state as an Open311 status (a refusal awaiting its re-routing is still open).
PHASE_STATUS = {Phase.transmitted: IncidentStatus.received, Phase.acknowledged: IncidentStatus.acknowledged,
                Phase.on_site: IncidentStatus.on_site, Phase.resolved: IncidentStatus.resolved,
                Phase.closed: IncidentStatus.rejected, Phase.duplicate: IncidentStatus.rejected,
                Phase.awaiting_reroute: IncidentStatus.received}


@dataclass(frozen=True)
class Milestone:
    """One step of a request's history: ``received``, ``transmitted``, or a
    :class:`~veille.notify.changes.Change` value; ``reason`` of a refusal (a symbol, never text)."""

    at: datetime
    kind: str
    reason: str | None = None


@dataclass(frozen=True)
class CaseEvent:
    """A record that moved a case's state, kept to replay the case in time order."""

    at: datetime
    record: RoutedIncident | StatusUpdate
    generation: int | None = None  # the first report's routing generation (its own record)
    reason: str | None = None

    @property
    def key(self) -> tuple[object, ...]:
        r = self.record
        if isinstance(r, RoutedIncident):
            return (r.id, r.routed_at)
        return (r.incident_id, r.agency_id, r.at, r.status)


@dataclass(frozen=True)
class ServiceRequest:
    id: str
    category: str
    municipality: str
    requested: datetime
    status: IncidentStatus
    updated: datetime
    agency_id: str | None
    lat: float | None = None
    lon: float | None = None
    routed: bool = False  # False: known only from this intake's own acceptance
    reference: str | None = None
    history: tuple[Milestone, ...] = ()
    track: Track = field(default_factory=Track, compare=False, repr=False)
    told: State | None = None
    # Grouping (docs/grouping.md): the case it was grouped into (None: not grouped), whether a body
    # split it out (then it answers with its own state), and as answered, its case's reports.
    case_id: str | None = None
    split: bool = False
    case_reports: int = 0


class RequestBook:
    """Requests by id; ``apply`` is the single writer (the consumer thread, or tests)."""

    def __init__(self, settings: Settings | None = None, *, capacity: int = CAPACITY,
                 reference: Callable[[str], str] | None = None) -> None:
        self.settings = settings
        self.capacity = capacity
        self.reference = reference
        self._lock = threading.Lock()
        self._requests: OrderedDict[str, ServiceRequest] = OrderedDict()
        self._by_reference: dict[str, str] = {}
        # Per case id: the case's state (its track merges every body of its reports) and its reports.
        self._cases: dict[str, ServiceRequest] = {}
        self._members: dict[str, set[str]] = {}
        # Per case id: what made its state, in time order. A case's reports and their status updates
        # are keyed by several incident ids, so they arrive from several partitions in any order;
        # a late one (older than the last applied) rebuilds the case from this log, so that its
        # history is the same whatever the arrival order (an acknowledgement read after an
        # on-site visit of another body is still a step of the case, before the visit).
        self._case_log: dict[str, list[CaseEvent]] = {}
        self.caught_up = threading.Event()  # set once the backlog present at start was read
        self._follower = (None if settings is None else Follower(
            settings, [Topics(settings.topic_prefix).routed], "veille-open311",
            lambda m, resolver: self.apply_bytes(m.value, resolver), self.caught_up))
        self.skipped = 0  # records that could not be decoded

    # ------------------------------------------------------------------ reading

    def get(self, request_id: str) -> ServiceRequest | None:
        with self._lock:
            found = self._requests.get(request_id)
            return None if found is None else self._answered(found)

    def by_reference(self, reference: str) -> ServiceRequest | None:
        with self._lock:
            request_id = self._by_reference.get(reference)
            found = self._requests.get(request_id) if request_id is not None else None
            return None if found is None else self._answered(found)

    def _answered(self, request: ServiceRequest) -> ServiceRequest:
        """A report of a case answers with the case's state (``open311_cases``); a split one, or
        one not grouped, with its own."""
        if request.case_id is None or request.split:
            return request
        case = self._cases.get(request.case_id)
        if case is None:
            return request
        joined = next((m.at for m in request.history if m.kind == "transmitted"), request.requested)
        members = self._members.get(request.case_id, set())
        return replace(request, status=case.status, updated=max(request.updated, case.updated),
                       agency_id=case.agency_id or request.agency_id,
                       history=open311_cases.member_history(request.history, case.history, request.requested,
                                                            joined),
                       case_reports=sum(1 for m in members if not self._split(m)))

    def _split(self, request_id: str) -> bool:
        found = self._requests.get(request_id)
        return found is not None and found.split

    def updates(self, *, municipalities: Collection[str], start: datetime, end: datetime,
                limit: int) -> list[tuple[ServiceRequest, int, Milestone]]:
        """Every step of a history within [start, end], oldest first: (request, its index, step)."""
        with self._lock:
            rows = [self._answered(r) for r in self._requests.values()]
        out = [(r, n, m) for r in rows if r.municipality in municipalities
               for n, m in enumerate(r.history) if start <= m.at <= end]
        out.sort(key=lambda row: row[2].at)
        return out[:limit]

    def query(self, *, municipalities: Collection[str], categories: Collection[str] | None,
              start: datetime, end: datetime, closed: bool | None,
              closed_statuses: Collection[IncidentStatus], limit: int) -> list[ServiceRequest]:
        """Newest first, requested within [start, end]."""
        with self._lock:
            rows = [self._answered(r) for r in self._requests.values()]
        out = [r for r in rows if r.municipality in municipalities
               and (categories is None or r.category in categories) and start <= r.requested <= end
               and (closed is None or (r.status in closed_statuses) == closed)]
        out.sort(key=lambda r: r.requested, reverse=True)
        return out[:limit]

    def __len__(self) -> int:
        return len(self._requests)

    # ------------------------------------------------------------------ writing

    def _put(self, request: ServiceRequest) -> None:
        if request.reference is None and self.reference is not None:
            request = replace(request, reference=self.reference(request.id))
        self._requests[request.id] = request
        if request.reference is not None:
            self._by_reference[request.reference] = request.id
        if len(self._requests) > self.capacity:
            _, evicted = self._requests.popitem(last=False)
            if evicted.reference is not None:
                self._by_reference.pop(evicted.reference, None)
            if evicted.case_id is not None:
                members = self._members.get(evicted.case_id, set())
                members.discard(evicted.id)
                if not members:
                    self._members.pop(evicted.case_id, None)
                    self._cases.pop(evicted.case_id, None)
                    self._case_log.pop(evicted.case_id, None)

    def submitted(self, request_id: str, category: str, municipality: str, at: datetime,
                  location: Mapping[str, float] | None, reference: str | None = None) -> None:
        """Read-your-writes of an accepted request; ``reference``: its tracking reference when the
        caller already derived it (a keyed MAC: derived once per request, not twice)."""
        with self._lock:
            if request_id not in self._requests:
                self._put(ServiceRequest(request_id, category, municipality, at, IncidentStatus.received, at,
                                         None, location["lat"] if location else None,
                                         location["lon"] if location else None,
                                         history=(Milestone(at, "received"),), reference=reference))

    def apply(self, record: RoutedIncident | StatusUpdate | CaseSplit) -> None:
        with self._lock:
            if isinstance(record, CaseSplit):
                self._split_out(record)
            elif isinstance(record, RoutedIncident):
                key = str(record.id)
                known = self._requests.get(key)
                fresh = known is None or not known.routed
                if known is None or not known.routed:
                    first = record.dispatches[0].agency_id if record.dispatches else None
                    history = known.history if known else (Milestone(record.reported_at, "received"),)
                    known = ServiceRequest(
                        key, record.category.value, record.municipality, record.reported_at,
                        IncidentStatus.received, record.routed_at, first,
                        record.location.lat if record.location else None,
                        record.location.lon if record.location else None, routed=True,
                        history=(*history, Milestone(record.routed_at, "transmitted")))
                if record.case_id is not None and known.case_id is None:
                    known = replace(known, case_id=str(record.case_id))
                generation = known.track.generation
                changes.apply_routed(known.track, record)
                if known.case_id is not None:
                    self._case_routed(known, record)
                if known.track.generation == generation and not fresh:
                    return  # a re-delivery: the lifecycle already moved on
                self._put(self._moved(known, record.routed_at, None, None))
            else:
                key = str(record.incident_id)
                known = self._requests.get(key)
                if known is None or not known.routed:
                    return  # unknown incident (before the retention window)
                before = dict(known.track.bodies)
                changes.apply_status(known.track, record)
                if known.track.bodies == before:
                    return  # an older update, or a re-delivery
                reason = record.reason.value if record.reason is not None else None
                self._requests[key] = self._moved(known, record.at, record.agency_id, reason)
                if known.case_id is not None and not known.split:
                    self._case_status(known.case_id, record, reason)

    # A case's state (open311_cases): created by whichever of its reports is read first.

    def _case_routed(self, report: ServiceRequest, record: RoutedIncident) -> None:
        case_id = str(record.case_id)
        self._members.setdefault(case_id, set()).add(report.id)
        generation = report.track.generation if report.id == case_id else None
        self._case_event(case_id, CaseEvent(record.routed_at, record, generation))

    def _case_status(self, case_id: str, record: StatusUpdate, reason: str | None) -> None:
        if case_id in self._cases:
            self._case_event(case_id, CaseEvent(record.at, record, None, reason))

    def _case_event(self, case_id: str, event: CaseEvent) -> None:
        log = self._case_log.setdefault(case_id, [])
        if any(e.key == event.key for e in log):
            return  # a re-delivery (a replayed topic): already in the case
        late = bool(log) and event.at < log[-1].at
        bisect.insort_right(log, event, key=lambda e: e.at)
        if not late:
            moved = self._case_applied(self._cases.get(case_id), event)
            if moved is not None:
                self._cases[case_id] = moved
            return
        # A status stamped before every routing of the case (a body's clock behind the router's)
        # waits for the case's first routing instead of being lost.
        first = next(e for e in log if isinstance(e.record, RoutedIncident))
        case: ServiceRequest | None = None
        for known in [first, *(e for e in log if e is not first)]:
            case = self._case_applied(case, known)
        if case is not None:
            self._cases[case_id] = case

    def _case_applied(self, case: ServiceRequest | None, event: CaseEvent) -> ServiceRequest | None:
        """The case once it took one of its records (created by the first one)."""
        record = event.record
        if isinstance(record, RoutedIncident):
            case = case or ServiceRequest(str(record.case_id), record.category.value, record.municipality,
                                          record.reported_at, IncidentStatus.received, record.routed_at, None,
                                          routed=True)
            open311_cases.join_bodies(case.track, record.dispatches, record.routed_at)
            if event.generation is not None:  # the case's first report: its re-routings are the case's
                case.track.generation = open311_cases.case_generation(event.generation)
            return self._moved(case, record.routed_at, None, None)
        if case is None:
            return None
        before = dict(case.track.bodies)
        changes.apply_status(case.track, record)
        if case.track.bodies == before:
            return case
        return self._moved(case, record.at, record.agency_id, event.reason)

    def _split_out(self, record: CaseSplit) -> None:
        """From now on the report answers with its own state, the splitting body's dispatch in it."""
        key = str(record.incident_id)
        known = self._requests.get(key)
        if known is None or not known.routed or known.split:
            return  # unknown (before the retention window), or split already
        if record.agency_id not in known.track.bodies:
            known.track.bodies[record.agency_id] = BodyStatus(IncidentStatus.received.value,
                                                              record.at.isoformat())
        self._requests[key] = self._moved(replace(known, split=True, case_id=str(record.case_id)),
                                          record.at, None, None)

    @staticmethod
    def _moved(known: ServiceRequest, at: datetime, agency_id: str | None,
               reason: str | None) -> ServiceRequest:
        """The request once its track took a record: status, time and history of the overall state."""
        now = changes.overall(known.track)
        told = changes.change(known.told, now)
        history = known.history + ((Milestone(at, told.value, reason),) if told is not None else ())
        status = PHASE_STATUS[now.phase]
        if now.phase is Phase.transmitted and any(b.status == IncidentStatus.dispatched.value
                                                  for b in known.track.bodies.values()):
            status = IncidentStatus.dispatched  # a body passed it on to its own service
        moved = status != known.status or told is not None
        return replace(known, status=status, updated=max(known.updated, at) if moved else known.updated,
                       agency_id=agency_id or known.agency_id, history=history,
                       told=changes.told_after(known.told, now, told))

    def apply_bytes(self, value: bytes | None, resolver: Any = None) -> None:
        try:
            decoded = codec.decode(value, expect=ROUTED_TYPES, resolver=resolver)
            if decoded.record_type == "RoutedIncident":
                self.apply(RoutedIncident.from_avro(decoded.value))
            elif decoded.record_type == "StatusUpdate":
                self.apply(StatusUpdate.from_avro(decoded.value))
            elif decoded.record_type == "CaseSplit":
                self.apply(CaseSplit.from_avro(decoded.value))
        except Exception:  # a record the hub's own router wrote: log the position, never the bytes
            self.skipped += 1

    # ------------------------------------------------------------------ consuming

    def start(self) -> None:
        if self._follower is not None:
            self._follower.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._follower is not None:
            self._follower.stop(timeout)
