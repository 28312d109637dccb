"""The desk's read model: every body's incident dispatches, their statuses and delivery, in memory.

Fed (``producers/desk/feed.py``) from the agencies' dispatch topics (each ``Dispatch``: what the
personal-data rules give that body, decoded by ``veille.deliver.view``), ``<prefix>.routed``
(``RoutedIncident``: which other bodies got the same incident; the ``StatusUpdate`` the router
forwarded once it checked the dispatch id) and ``<prefix>.delivery`` (``DeliveryReceipt``).

**Who sees what is decided here, once**: :meth:`DeskBook.visible` is the only way out of the
book, and it returns the dispatches of one agency only. The pages never filter by agency
themselves; a dispatch id of another body is "not found", exactly like an unknown one.

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
from veille.schemas.models import DeliveryReceipt, Dispatch, RoutedIncident, StatusUpdate

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

    @property
    def dispatch(self) -> Dispatch:
        return self.view.dispatch

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
        return (1 if self.closed else 0, -SEVERITY_RANK.get(self.dispatch.severity, 0),
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
                and (not self.severities or d.severity in self.severities)
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

    def others(self, entry: Entry) -> list[str]:
        """The other bodies dispatched the same incident (ids only: their work is theirs)."""
        with self._lock:
            known = self._incidents.get(entry.incident_id)
            return sorted(known.agencies - {entry.agency_id}) if known else []

    def __len__(self) -> int:
        return len(self._entries)

    # ------------------------------------------------------------------ writing

    def apply(self, record: Dispatch | RoutedIncident | StatusUpdate | DeliveryReceipt) -> None:
        with self._lock:
            if isinstance(record, Dispatch):
                self._dispatch(record)
            elif isinstance(record, RoutedIncident):
                self._incident(str(record.id)).agencies.update(d.agency_id for d in record.dispatches)
            elif isinstance(record, StatusUpdate):
                self._status(record)
            else:
                self._receipt(record)

    def acted(self, update: StatusUpdate) -> None:
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
        entry = Entry(key, dispatch.agency_id, dispatch.event_id, decoded, status_at=dispatch.routed_at,
                      history=((IncidentStatus.received, dispatch.reported_at),))
        self._put(entry)
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
