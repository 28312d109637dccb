"""The desk's read model: every body's incident dispatches, their statuses and delivery, in memory.

Fed (``producers/desk/feed.py``) from the agencies' dispatch topics (each ``Dispatch``: what the
personal-data rules give that body, decoded by ``veille.deliver.view``), ``<prefix>.routed``
(``RoutedIncident``: which other bodies got the same incident; the ``StatusUpdate`` the router
forwarded once it checked the dispatch id) and ``<prefix>.delivery`` (``DeliveryReceipt``).

**Who sees what is decided here, once**: :meth:`DeskBook.visible` is the only way out of the
book, and it returns the dispatches of one agency only. The pages never filter by agency
themselves; a dispatch id of another body is "not found", exactly like an unknown one.

Cases (docs/grouping.md, "What bodies receive"): a Dispatch v2 whose ``case.role`` is
``update`` is not a row of its own: it is folded into the body's dispatch of the case
(``case.update_of``): the case's count, severity and positions follow its latest update, and
its reports are listed (:meth:`DeskBook.linked`). A ``CaseSplit`` the router forwarded (or the
desk's own, acknowledged: :meth:`DeskBook.acted`) makes the update a row of its own, answered
on its own id.

Alerts' dispatches are left out: a StatusUpdate answers an incident (its ``incident_id`` is a
UUID), and a body acts on an alert through its own safeguard plan, not through this desk.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from multidict import MultiMapping

from veille.deliver.view import DispatchView, view
from veille.schemas.enums import DeliveryOutcome, EventType, IncidentStatus, Severity
from veille.schemas.models import (
    CaseSplit,
    DeliveryReceipt,
    Dispatch,
    GeoPoint,
    RoutedIncident,
    StatusUpdate,
)

# Dispatches kept (oldest evicted first). Measured ~4.5 kB each once decoded (pydantic models;
# the payload's bytes are dropped, its fields kept): 50,000 ~ 225 MB, more than 30 days of a
# territory sending a thousand dispatches a day.
CAPACITY = 50_000
CLOSED = frozenset({IncidentStatus.resolved, IncidentStatus.rejected})
SEVERITY_RANK = {s.value: s.rank for s in Severity}


@dataclass(frozen=True)
class Entry:
    """One dispatch as the desk shows it."""

    id: str
    agency_id: str
    incident_id: str
    view: DispatchView
    status: IncidentStatus = IncidentStatus.received
    status_at: datetime | None = None
    history: tuple[tuple[IncidentStatus, datetime], ...] = ()
    delivery: DeliveryOutcome | None = None
    delivery_at: datetime | None = None
    # Cases (Dispatch v2): the case, this dispatch's role in it, and for the case's dispatch
    # the updates folded into it (their dispatch ids, in arrival order) and its latest figures.
    case_id: str | None = None
    role: str | None = None  # opened | update | None (not grouped)
    update_of: str | None = None
    split: bool = False  # an update split out of its case: a row of its own
    linked: tuple[str, ...] = ()
    case_reports: int = 1
    case_severity: str | None = None
    positions: tuple[GeoPoint, ...] = ()

    @property
    def dispatch(self) -> Dispatch:
        return self.view.dispatch

    @property
    def severity(self) -> str:
        """The case's severity for a case's dispatch (raised by its reports), else its own."""
        return self.case_severity if self.role == "opened" and self.case_severity else self.dispatch.severity

    @property
    def folded(self) -> bool:
        """An update shown inside its case's dispatch, not as a row."""
        return self.role == "update" and not self.split

    @property
    def closed(self) -> bool:
        return self.status in CLOSED

    @property
    def acknowledged_at(self) -> datetime | None:
        """When the body first acted (anything after *received*)."""
        return next((at for s, at in self.history if s != IncidentStatus.received), None)

    @property
    def resolved_at(self) -> datetime | None:
        return next((at for s, at in self.history if s in CLOSED), None)

    def urgency(self) -> tuple[int, int, float]:
        """Sort key: open first, then the most severe, then the newest."""
        return (1 if self.closed else 0, -SEVERITY_RANK.get(self.severity, 0),
                -self.dispatch.reported_at.timestamp())


@dataclass(frozen=True)
class Filters:
    """What the inbox's URL may narrow (every field optional)."""

    state: str = "open"  # open | closed | all
    categories: frozenset[str] = frozenset()
    severities: frozenset[str] = frozenset()
    municipalities: frozenset[str] = frozenset()

    def keeps(self, entry: Entry) -> bool:
        d = entry.dispatch
        return ((self.state == "all" or entry.closed == (self.state == "closed"))
                and (not self.categories or d.category in self.categories)
                and (not self.severities or entry.severity in self.severities)
                and (not self.municipalities or d.municipality in self.municipalities))


@dataclass
class _Incident:
    agencies: set[str] = field(default_factory=set)


class DeskBook:
    """Dispatches by id; ``apply`` is the single writer (the feed's thread, or tests)."""

    def __init__(self, *, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._by_agency: dict[str, dict[str, Entry]] = {}  # the same entries, per body
        self._incidents: dict[str, _Incident] = {}
        # Statuses and receipts that came before their dispatch (topics are read side by side).
        self._early_status: dict[str, list[StatusUpdate]] = {}
        self._early_receipt: dict[str, DeliveryReceipt] = {}
        # Updates read before their case's dispatch (another partition): case dispatch id -> ids.
        self._early_fold: dict[str, list[str]] = {}
        self._splits: set[str] = set()  # dispatch ids split out (a split may come first)
        self.caught_up = threading.Event()
        self.skipped = 0

    # ------------------------------------------------------------------ reading: the one gate

    def visible(self, agency_id: str, ids: Iterable[str] | None = None,
                filters: Filters | None = None) -> list[Entry]:
        """The dispatches of ``agency_id`` (only those among ``ids`` when given), most urgent
        first. The only way the desk reads the book: no other body's dispatch ever comes out."""
        with self._lock:
            own = self._by_agency.get(agency_id, {})
            if ids is None:
                rows = list(own.values())
            else:
                found = (own.get(str(i)) for i in ids)
                rows = [e for e in found if e is not None and e.agency_id == agency_id]
        if filters is not None:
            rows = [e for e in rows if filters.keeps(e)]
        rows.sort(key=Entry.urgency)
        return rows

    def one(self, agency_id: str, dispatch_id: str) -> Entry | None:
        found = self.visible(agency_id, [dispatch_id])
        return found[0] if found else None

    def linked(self, entry: Entry) -> list[Entry]:
        """The reports folded into a case's dispatch of the body (and those split from it),
        oldest first. Only ``entry``'s own: its body's updates."""
        with self._lock:
            found = (self._entries.get(i) for i in entry.linked)
            rows = [e for e in found if e is not None and e.agency_id == entry.agency_id]
        rows.sort(key=lambda e: e.dispatch.reported_at)
        return rows

    def update(self, agency_id: str, dispatch_id: str) -> Entry | None:
        """An update of a case held by ``agency_id`` and not split yet (what may be split)."""
        with self._lock:
            entry = self._entries.get(str(dispatch_id))
        if entry is None or entry.agency_id != agency_id or not entry.folded:
            return None
        return entry

    def others(self, entry: Entry) -> list[str]:
        """The other bodies dispatched the same incident (ids only: their work is theirs)."""
        with self._lock:
            known = self._incidents.get(entry.incident_id)
            return sorted(known.agencies - {entry.agency_id}) if known else []

    def __len__(self) -> int:
        return len(self._entries)

    # ------------------------------------------------------------------ writing

    def apply(self, record: Dispatch | RoutedIncident | StatusUpdate | DeliveryReceipt | CaseSplit) -> None:
        with self._lock:
            if isinstance(record, Dispatch):
                self._dispatch(record)
            elif isinstance(record, CaseSplit):
                self._split(record)
            elif isinstance(record, RoutedIncident):
                self._incident(str(record.id)).agencies.update(d.agency_id for d in record.dispatches)
            elif isinstance(record, StatusUpdate):
                self._status(record)
            else:
                self._receipt(record)

    def acted(self, update: StatusUpdate | CaseSplit) -> None:
        """Read-your-writes: an action the broker acknowledged, before the router forwards it."""
        self.apply(update)

    def _incident(self, incident_id: str) -> _Incident:
        return self._incidents.setdefault(incident_id, _Incident())

    def _dispatch(self, dispatch: Dispatch) -> None:
        key = str(dispatch.id)
        if dispatch.event_type != EventType.incident or key in self._entries:
            return  # an alert, or a re-delivery
        decoded = view(dispatch)
        # The payload's fields are in the view now: its bytes would double each entry's memory.
        decoded = replace(decoded, dispatch=dispatch.model_copy(update={"payload": b""}))
        case = dispatch.case
        entry = Entry(key, dispatch.agency_id, dispatch.event_id, decoded, status_at=dispatch.routed_at,
                      history=((IncidentStatus.received, dispatch.reported_at),))
        if case is not None:
            entry = replace(entry, case_id=str(case.id), role=case.role.value, case_reports=case.reports,
                            update_of=None if case.update_of is None else str(case.update_of),
                            case_severity=case.severity, positions=tuple(case.positions),
                            split=key in self._splits)
        if entry.folded:
            self._entries[key] = entry  # found by id (statuses, a split), not a row
            self._fold(entry)
        else:
            self._put(entry)
            for update_id in self._early_fold.pop(key, []):
                folded = self._entries.get(update_id)
                if folded is not None:
                    self._fold(folded)
        self._incident(dispatch.event_id).agencies.add(dispatch.agency_id)
        if len(self._entries) > self.capacity:
            _, old = self._entries.popitem(last=False)
            self._by_agency.get(old.agency_id, {}).pop(old.id, None)
            self._incidents.pop(old.incident_id, None)
        for update in self._early_status.pop(key, []):
            self._status(update)
        receipt = self._early_receipt.pop(key, None)
        if receipt is not None:
            self._receipt(receipt)

    def _fold(self, update: Entry) -> None:
        """An update into its case's dispatch: the count, severity and positions of the latest."""
        case = self._entries.get(update.update_of or "")
        if case is None or case.agency_id != update.agency_id:
            if len(self._early_fold) < self.capacity:
                self._early_fold.setdefault(update.update_of or "", []).append(update.id)
            return
        if update.id in case.linked:
            return
        latest = update.case_reports >= case.case_reports
        self._put(replace(case, linked=(*case.linked, update.id),
                          case_reports=max(case.case_reports, update.case_reports),
                          case_severity=update.case_severity if latest else case.case_severity,
                          positions=update.positions if latest else case.positions))

    def _split(self, split: CaseSplit) -> None:
        key = str(split.dispatch_id)
        entry = self._entries.get(key)
        if entry is None:
            if len(self._splits) < self.capacity:
                self._splits.add(key)  # its dispatch comes later: it will be a row at once
            return
        if entry.agency_id != split.agency_id or not entry.folded:
            return  # not this body's, or split already
        self._splits.add(key)
        self._put(replace(entry, split=True))

    def _put(self, entry: Entry) -> None:
        self._entries[entry.id] = entry
        self._by_agency.setdefault(entry.agency_id, {})[entry.id] = entry

    def _status(self, update: StatusUpdate) -> None:
        if update.dispatch_id is None:
            return  # a v1 update names no dispatch: the router no longer forwards those
        key = str(update.dispatch_id)
        entry = self._entries.get(key)
        if entry is None:
            if len(self._early_status) < self.capacity:
                self._early_status.setdefault(key, []).append(update)
            return
        if entry.agency_id != update.agency_id or (update.status, update.at) in entry.history:
            return  # not this body's answer, or one already applied (acted, then forwarded)
        history = tuple(sorted((*entry.history, (update.status, update.at)), key=lambda h: h[1]))
        latest_status, latest_at = history[-1]
        self._put(replace(entry, status=latest_status, status_at=latest_at, history=history))

    def _receipt(self, receipt: DeliveryReceipt) -> None:
        key = str(receipt.dispatch_id)
        entry = self._entries.get(key)
        if entry is None:
            if len(self._early_receipt) < self.capacity:
                self._early_receipt[key] = receipt
            return
        if entry.delivery == DeliveryOutcome.delivered:
            return  # delivered once is delivered
        self._put(replace(entry, delivery=receipt.outcome, delivery_at=receipt.at))


def parse_filters(query: MultiMapping[str], known_categories: Collection[str]) -> Filters:
    """The inbox's filters from its URL (unknown values ignored, never an error)."""

    def many(name: str) -> frozenset[str]:
        return frozenset(v for v in query.getall(name, []) if v)

    states = {"ouverts": "open", "clos": "closed", "tous": "all"}
    return Filters(state=states.get(query.get("etat", ""), "open"),
                   categories=frozenset(c for c in many("categorie") if c in known_categories),
                   severities=frozenset(s for s in many("gravite") if s in SEVERITY_RANK),
                   municipalities=many("commune"))
