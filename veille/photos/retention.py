"""How long a photo is kept: like the reporter's contact, a documented time after the incident closes.

A photo is deleted from the object store when every incident that refers to it is over:
``VEILLE_PHOTOS_RETENTION_DAYS_AFTER_CLOSED`` days (default 30) after the incident's last status
was *resolved* or *rejected*, and in any case ``VEILLE_PHOTOS_MAX_RETENTION_DAYS`` (default 365)
after it was uploaded (an incident never closed, or a photo uploaded for a report that was
never published). An incident reopened after its closure is not closed any more.

:func:`purge` is pure over its inputs (a store, when each incident closed, now): the CLI
``veille photos purge`` feeds it the closure times from the shared store's status events
(:func:`closed_in_store`) and is run daily (cron, a Kubernetes CronJob, ``deploy/``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from veille.photos.settings import PhotoSettings
from veille.photos.store import PhotoStore
from veille.schemas.models import IncidentStatus

CLOSING = (IncidentStatus.resolved.value, IncidentStatus.rejected.value)


@dataclass(frozen=True)
class PurgeReport:
    references_dropped: int
    photos_deleted: int
    photos_kept: int


def purge(store: PhotoStore, closed_at: Callable[[Iterable[UUID]], Mapping[UUID, datetime]],
          settings: PhotoSettings, now: datetime | None = None) -> PurgeReport:
    """Drop the references whose retention is over; delete the photos nobody refers to any more."""
    now = now or datetime.now(UTC)
    after_closed = timedelta(days=settings.retention_days_after_closed)
    longest = timedelta(days=settings.max_retention_days)
    incidents = list(store.incidents())
    closed = closed_at(incidents)
    dropped, deleted, touched = 0, 0, set()
    for incident in incidents:
        closed_on = closed.get(incident)
        for digest in store.photos_of(incident):
            stored = store.stored_at(digest)
            over = (closed_on is not None and now - closed_on >= after_closed) \
                or stored is None or now - stored >= longest
            if over:
                store.forget(incident, digest)
                dropped += 1
                touched.add(digest)
    for digest in touched:
        if not store.users_of(digest):
            store.delete(digest)
            deleted += 1
    kept = len({d for i in store.incidents() for d in store.photos_of(i)})
    return PurgeReport(dropped, deleted, kept)


def closed_in_store(query: Callable[[str], list[dict[str, Any]]], database: str,
                    batch: int = 500) -> Callable[[Iterable[UUID]], Mapping[UUID, datetime]]:
    """When each incident closed, per the shared store's status events: its last status is
    resolved or rejected (a later reopened or acknowledged undoes it)."""
    def closed_at(incidents: Iterable[UUID]) -> Mapping[UUID, datetime]:
        ids = [str(UUID(str(i))) for i in incidents]  # canonical UUID text only reaches the SQL
        out: dict[UUID, datetime] = {}
        for start in range(0, len(ids), batch):
            listed = ", ".join(f"'{i}'" for i in ids[start:start + batch])
            rows = query(
                f"SELECT toString(incident_id) AS incident, argMax(status, at) AS last, max(at) AS last_at "
                f"FROM {database}.status_events WHERE incident_id IN ({listed}) GROUP BY incident_id")
            for row in rows:
                if row["last"] in CLOSING:
                    at = row["last_at"]
                    out[UUID(row["incident"])] = at if at.tzinfo else at.replace(tzinfo=UTC)
        return out

    return closed_at
