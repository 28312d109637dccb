"""A case's overall state, for the residents of its reports (issue 25, docs/grouping.md "What the
store and the residents see").

**The problem.** The notifier's state is per partition of ``<prefix>.routed``, keyed by incident
id. A resident consented on a report that *joined* a case (a later report: for most bodies an
update of their dispatch of the case, never answered on its own). The bodies answer the case on
its dispatches: the case's first report's (its id is the case id) and, for a body that first
received the case through a later report (the next town's services), that report's. Those status
updates are keyed by those reports' ids: on other partitions, held by other notifier replicas.

**The design: every notifier replica reads the case states of the whole topic.** A
:class:`CaseWatch` per replica reads every partition of ``<prefix>.routed`` from the beginning
(no consumer group, like the intake's Open311 read model) and folds into :class:`CaseStates`
only what concerns cases: which case each grouped report is in (RoutedIncident v2 ``case_id``),
the bodies each was dispatched to, their status updates, the splits. Memory: ids and statuses of
grouped reports only. Why not a compacted topic of case states: no single replica sees a whole
case (its status updates are spread over partitions), so each would publish a part and every
replica would still read them all; reading ``routed`` itself gives the same with no new topic,
no new writer to trust and no ordering between two topics to reason about. The cost is each
replica reading the whole topic (the hub's traffic, a few hundred records a minute at worst).

**Telling.** The notifier's step keeps a member's entry as for any report (its partition, its
changelog), marked with its case (``Track.case_id``). Its state is the case's
(:meth:`CaseStates.state`) instead of its own; when the watcher folds a record that changes a
case, the step (in its own thread, at its next poll) tells each of that case's members it holds
whose told state differs, with the same rules (``changes.change``): once per change, the told
state written to the changelog before anything else. Nothing is told from a case before the
watcher read the topic up to its end at start (:attr:`CaseWatch.caught_up`): a partial case
would look like a step backwards. A report split out of its case (CaseSplit) answers with its own
track from then on (the splitting body added as ``received``). What depends on arrival order:
records of different partitions are folded in the order the watcher reads them, so two changes
of a case close together may be told as one (the latest); a change is never told twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from veille.config import Settings
from veille.consumer.follower import Follower
from veille.notify import changes
from veille.notify.changes import BodyStatus, State, Track
from veille.schemas import codec
from veille.schemas.models import CaseSplit, DispatchTarget, IncidentStatus, RoutedIncident, StatusUpdate
from veille.topics import ROUTED_TYPES, Topics

log = logging.getLogger("veille.notify.cases")


def join_bodies(track: Track, dispatches: Iterable[DispatchTarget], at: datetime) -> None:
    """The bodies a report of the case was dispatched to join the case's track (``received``),
    without a new generation: a body receiving the case through a later report is no re-routing."""
    for d in dispatches:
        if d.agency_id not in track.bodies:
            track.bodies[d.agency_id] = BodyStatus(IncidentStatus.received.value, at.isoformat())


def case_generation(first_report_generation: int) -> int:
    """The case's generation: its first report's routings after the first (a re-routing of the
    case's dispatch is told as one); 0 before its first report is seen."""
    return max(0, first_report_generation - 1)


class CaseStates:
    """Cases folded from ``<prefix>.routed``: pure, one writer (the watcher's thread or a test)."""

    def __init__(self) -> None:
        self._case_of: dict[str, str] = {}  # grouped report -> its case
        self._split: set[str] = set()
        self._first: dict[str, Track] = {}  # the case's first report's own routings (generation)
        self._cases: dict[str, Track] = {}

    def apply(self, record: RoutedIncident | StatusUpdate | CaseSplit) -> str | None:
        """Fold one record; the id of the case whose state it may have changed, if any."""
        if isinstance(record, RoutedIncident):
            if record.case_id is None:
                return None
            case, report = str(record.case_id), str(record.id)
            self._case_of[report] = case
            track = self._cases.setdefault(case, Track())
            join_bodies(track, record.dispatches, record.routed_at)
            if report == case:
                first = self._first.setdefault(case, Track())
                changes.apply_routed(first, record)
                track.generation = case_generation(first.generation)
                track.category, track.municipality = record.category.value, record.municipality
            return case
        report = str(record.incident_id)
        if isinstance(record, CaseSplit):
            self._split.add(report)
            return None
        found = self._case_of.get(report)
        if found is None or report in self._split:
            return None
        track = self._cases[found]
        before = dict(track.bodies)
        changes.apply_status(track, record)
        return found if track.bodies != before else None

    def state(self, case_id: str) -> State | None:
        track = self._cases.get(case_id)
        return changes.overall(track) if track is not None and track.bodies else None

    def __len__(self) -> int:
        return len(self._cases)


class CaseWatch:
    """:class:`CaseStates` fed by a background reader of every partition of ``<prefix>.routed``."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings
        self.states = CaseStates()
        self._lock = threading.Lock()
        self._changed: set[str] = set()
        self.caught_up = threading.Event()  # the topic's end at start was read
        self._follower = (None if settings is None else Follower(
            settings, [Topics(settings.topic_prefix).routed], "veille-notify-cases",
            lambda m, resolver: self.apply_bytes(m.value, resolver), self.caught_up))
        self.skipped = 0

    def state(self, case_id: str) -> State | None:
        """The case's state; None before the watcher caught up (never tell from a partial case)."""
        if not self.caught_up.is_set():
            return None
        with self._lock:
            return self.states.state(case_id)

    def drain(self) -> set[str]:
        """The cases changed since the last drain (all cases the first time after catching up)."""
        if not self.caught_up.is_set():
            return set()
        with self._lock:
            out, self._changed = self._changed, set()
        return out

    def requeue(self, cases: set[str]) -> None:
        """Cases whose members could not all be told yet (a deferred message): drained again."""
        with self._lock:
            self._changed |= cases

    def apply(self, record: RoutedIncident | StatusUpdate | CaseSplit) -> None:
        with self._lock:
            case = self.states.apply(record)
            if case is not None:
                self._changed.add(case)

    def apply_bytes(self, value: bytes | None, resolver: Any = None) -> None:
        try:
            decoded = codec.decode(value, expect=ROUTED_TYPES, resolver=resolver)
            model = {"RoutedIncident": RoutedIncident, "StatusUpdate": StatusUpdate,
                     "CaseSplit": CaseSplit}.get(decoded.record_type)
            if model is not None:
                self.apply(model.from_avro(decoded.value))
        except Exception:  # the step logs and counts the records it cannot read; never the bytes
            self.skipped += 1

    def start(self) -> None:
        if self._follower is not None:
            self._follower.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._follower is not None:
            self._follower.stop(timeout)
