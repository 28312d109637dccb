"""What an action on the desk publishes: one StatusUpdate per dispatch, through the intake's
acknowledged path (the gate's ``deliver``: acks=all, shown as done only once the broker
acknowledged it).

An action carries an id the page made (``action_id``). Each dispatch's StatusUpdate id is
derived from it (UUIDv5), and its time is the time the intake first saw that action, so an
action re-sent by the offline queue or a double click has the same id and the same bytes:
:class:`Sent` answers it as already done without publishing again, and if it raced past that
(two intakes), the router drops the identical copy.

Only the dispatch's own fields go into the update: the agency comes from the session's
identity, the incident from the read model, never from the form.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from veille.producers.desk.book import Entry
from veille.schemas.enums import IncidentStatus
from veille.web.identity import Identity

SENT_WINDOW = 50_000  # action ids remembered (a day of a busy territory's desks)


def update_id(action_id: str, dispatch_id: str) -> str:
    return str(uuid.uuid5(uuid.UUID(action_id), dispatch_id))


def status_update(identity: Identity, entry: Entry, *, action_id: str, status: IncidentStatus,
                  at: datetime, reason: str | None = None, corrected: dict[str, float] | None = None,
                  note: str | None = None) -> dict[str, Any]:
    """The StatusUpdate (v3) of one dispatch of ``identity``'s body."""
    if entry.agency_id != identity.agency_id:  # the book never gives another body's: belt and braces
        raise PermissionError("dispatch of another body")
    rejected = status == IncidentStatus.rejected
    return {"id": update_id(action_id, entry.id), "incident_id": entry.incident_id,
            "agency_id": identity.agency_id, "dispatch_id": entry.id, "status": status.value,
            "at": at.isoformat(), "note": note or None, "reason": reason if rejected else None,
            "corrected_location": corrected if rejected else None}


def case_split(identity: Identity, update: Entry, *, action_id: str, at: datetime) -> dict[str, Any]:
    """The CaseSplit of one update of a case held by ``identity``'s body (docs/grouping.md):
    every field from the read model and the session, none from the form but the id."""
    if update.agency_id != identity.agency_id or update.case_id is None:
        raise PermissionError("update of another body, or not of a case")
    return {"id": update_id(action_id, update.id), "incident_id": update.incident_id,
            "case_id": update.case_id, "agency_id": identity.agency_id,
            "service": update.dispatch.service.value, "dispatch_id": update.id, "at": at.isoformat()}


class Sent:
    """Action ids the intake saw: when each was first seen, and which updates the broker took."""

    def __init__(self, window: int = SENT_WINDOW) -> None:
        self.window = window
        self._first: OrderedDict[str, datetime] = OrderedDict()
        self._acked: set[str] = set()

    def first_seen(self, action_id: str) -> datetime:
        at = self._first.get(action_id)
        if at is None:
            at = self._first[action_id] = datetime.now(UTC)
            if len(self._first) > self.window:
                old, _ = self._first.popitem(last=False)
                self._acked = {u for u in self._acked if not u.startswith(old)}
        return at

    def done(self, action_id: str, dispatch_id: str) -> bool:
        return f"{action_id}:{dispatch_id}" in self._acked

    def mark(self, action_id: str, dispatch_id: str) -> None:
        self._acked.add(f"{action_id}:{dispatch_id}")
