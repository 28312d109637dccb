"""What an Open311 body does with the requests we sent it, read back as StatusUpdates.

Each incident dispatch delivered to a body's GeoReport v2 endpoint is tracked (its
``service_request_id``, or the token the endpoint gave until it becomes one) in a private file
of the state dir (``deliver/open311-requests.json``), so a restarted deliverer keeps asking.
Every ``open311_poll_seconds`` the tracker asks each endpoint for the statuses of its open
requests (``GET requests.json``), and mySociety's ``servicerequestupdates`` where the body
enabled it; each change is published on ``<prefix>.status`` as a StatusUpdate v2 carrying the
dispatch id, exactly as an agency would (the router checks it). A request is forgotten once
closed. A StatusUpdate's id is derived from the dispatch, status and time, so a poll repeated
after a crash publishes the same update, which the store keeps once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from confluent_kafka import Producer
from pydantic import BaseModel, Field, ValidationError

from veille.config import Settings
from veille.deliver.open311_client import Open311Error
from veille.deliver.outcome import Attempt
from veille.deliver.settings import DeliverySettings
from veille.schemas.models import DeliveryMethod, EventType, IncidentStatus, StatusUpdate
from veille.statedir import RecordFile
from veille.territory import Territory
from veille.topics import Topics

if TYPE_CHECKING:
    from veille.deliver.engine import Engine, Job

log = logging.getLogger("veille.deliver")

UPDATES_NAMESPACE = uuid.UUID("0b6f4c1e-6f0e-4d8f-9a53-3f1c2d7e9a10")
CLOSED = frozenset({IncidentStatus.resolved, IncidentStatus.rejected})


class Tracked(BaseModel):
    id: str  # the dispatch id
    agency_id: str
    incident_id: str
    reference: str  # service_request_id, or "token:<token>"
    status: IncidentStatus | None = None
    status_at: datetime | None = None  # the time of the change last published
    sent_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class Open311Tracker:
    def __init__(self, settings: Settings, territory: Territory, delivery: DeliverySettings,
                 producer: Producer) -> None:
        self.territory = territory
        self.delivery = delivery
        self.producer = producer
        self.topics = Topics(settings.topic_prefix)
        self.file = RecordFile(settings.state_dir / "deliver" / "open311-requests.json", Tracked)
        self._engine: Engine | None = None
        self._task: Future[object] | None = None
        self._since: dict[str, datetime] = {}  # agency -> end of its last poll (updates' window)

    def start(self, engine: Engine) -> None:
        self._engine = engine
        self._task = engine.call(self._loop())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def delivered(self, job: Job, method: DeliveryMethod, attempt: Attempt) -> None:
        """Called by the engine after each delivery: track what went to an Open311 endpoint."""
        dispatch = job.dispatch
        if method is not DeliveryMethod.open311 or dispatch.event_type is not EventType.incident:
            return
        if not attempt.reference:
            return
        records = dict(self.file.load())
        records[str(dispatch.id)] = Tracked(id=str(dispatch.id), agency_id=job.agency.id,
                                            incident_id=dispatch.event_id, reference=attempt.reference)
        self.file.save(records)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.delivery.open311_poll_seconds)
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # an endpoint's bug or outage must not stop the tracking
                log.exception("open311 status poll failed; trying again later")

    async def poll(self) -> int:
        """Ask every endpoint once; publish the changes. Returns how many were published."""
        assert self._engine is not None
        records = dict(self.file.load())
        agencies = sorted({r.agency_id for r in records.values()})
        published = 0
        now = datetime.now(UTC)
        for agency_id in agencies:
            agency = self.territory.agencies.get(agency_id)
            if agency is None or agency.delivery.open311 is None:
                continue
            client = self._engine.open311(agency)
            window = timedelta(seconds=2 * self.delivery.open311_poll_seconds)
            since = self._since.get(agency_id, now - window)
            try:
                for item in [r for r in records.values() if r.agency_id == agency_id]:
                    if item.reference.startswith("token:"):
                        found = await client.resolve_token(item.reference.removeprefix("token:"))
                        if found:
                            records[item.id] = item.model_copy(update={"reference": found})
                by_ref = {r.reference: r.id for r in records.values()
                          if r.agency_id == agency_id and not r.reference.startswith("token:")}
                # mySociety's updates first (every change since the last poll, in order), then
                # the current statuses (what an endpoint without the extension tells).
                updates = await client.updates(since, now) or []
                statuses = await client.statuses(sorted(by_ref))
            except (Open311Error, OSError, TimeoutError) as exc:
                log.warning("open311 statuses of %s unavailable: %s", agency_id, exc)
                continue
            self._since[agency_id] = now
            # (request, status, time, remote status, from the updates: older ones are history)
            observed: list[tuple[str, IncidentStatus | None, datetime | None, str, bool]] = [
                (u.service_request_id, u.veille_status, u.updated_datetime, u.status, True)
                for u in sorted(updates, key=lambda u: u.updated_datetime)]
            observed += [(r.service_request_id, r.veille_status, r.updated_datetime, r.status, False)
                         for r in statuses]
            for ref, status, at, raw, history in observed:
                known = records.get(by_ref.get(ref, ""))
                if known is None or status is None or status == known.status:
                    continue
                if history and at is not None and known.status_at is not None and at <= known.status_at:
                    continue  # already past it (a window read again after a restart)
                try:
                    when = self._publish(known, status, at)
                except ValidationError as exc:  # a remote value our contract refuses: skip it, loudly
                    log.warning("open311: status %r of dispatch %s not publishable: %s", raw, known.id,
                                exc.errors()[0]["msg"])
                    continue
                published += 1
                if status in CLOSED:
                    records.pop(known.id, None)
                else:
                    records[known.id] = known.model_copy(update={"status": status, "status_at": when})
        self.file.save(records)
        if published:
            self.producer.flush(30)
        return published

    def _publish(self, item: Tracked, status: IncidentStatus, at: datetime | None) -> datetime:
        now = datetime.now(UTC)
        # The body's own time of the change, unless it is before we sent the request (its clock,
        # or a time of the request's creation on its side) or in the future: then ours.
        when = at if at is not None and item.sent_at <= at <= now else now
        update = StatusUpdate(
            id=uuid.uuid5(UPDATES_NAMESPACE, f"{item.id}:{status.value}:{when.isoformat()}"),
            incident_id=uuid.UUID(item.incident_id), agency_id=item.agency_id,
            dispatch_id=uuid.UUID(item.id), status=status, at=when)
        self.producer.produce(self.topics.status, key=update.incident_id.bytes, value=update.encode())
        log.info("open311: dispatch %s of %s is now %s", item.id, item.agency_id, status.value)
        return when
