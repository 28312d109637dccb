"""Deadlines of a case on the real broker, with the real router and the real escalation worker.

The routing records of a case (RoutedIncident v2: the opening dispatched, later reports as
``updates``) are published here as the grouping worker will. A body splits one report out
(a CaseSplit on the status topic, checked and forwarded by the router): that report's own
acknowledgement deadline is missed and escalated; the case's dispatch is acknowledged and
stays quiet; the report left in the case never escalates (checked once a later sentinel's
escalation has been seen)."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from escalation_helpers import IN_35401, deployment, metric, redispatches, routed_records, worker
from hub_helpers import HubProcess

from veille.schemas.models import (
    CaseSplit,
    Channel,
    DispatchTarget,
    EventType,
    IncidentCategory,
    IncidentStatus,
    RoutedIncident,
    ServiceKind,
    Severity,
    StatusUpdate,
)
from veille.territory.dispatch import dispatch_id
from veille.topics import Topics

pytestmark = pytest.mark.kafka
SECOND = 1 / 3600
WORKS = ServiceKind.public_works
TARGET = DispatchTarget(agency_id="mairie-35401", service=WORKS, rule="voirie", cross_boundary=False)


def _routed(incident: uuid.UUID, case: uuid.UUID | None, *, update: bool,
            category: IncidentCategory = IncidentCategory.flash_flood) -> RoutedIncident:
    now = datetime.now(UTC)
    return RoutedIncident(id=incident, municipality="35401", category=category, severity=Severity.moderate,
                          channel=Channel.phone, location=IN_35401, occurred_at=now, reported_at=now,
                          routed_at=now, dispatches=[] if update else [TARGET],
                          updates=[TARGET] if update else [], case_id=case)


def test_a_split_report_gets_its_own_deadline_the_case_s_acknowledgement_is_not_its(
        kafka: Any, tmp_path: Path) -> None:
    settings = deployment(kafka, tmp_path, [
        {"id": "fast", "categories": ["flash_flood"], "acknowledge_hours": 6 * SECOND, "resolve_hours": 1},
        {"id": "later", "categories": ["theft"], "acknowledge_hours": 10 * SECOND, "resolve_hours": 1}])
    topics = Topics(settings.topic_prefix)
    key = settings.dispatch_key.get_secret_value().encode()
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    follow = worker(settings).start()
    try:
        router.info("router.json")
        metrics_url = follow.info("escalations.json")["metrics"]
        case, split, left = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        sentinel = uuid.uuid4()
        producer = Producer(settings.kafka_client_config())
        for record in (_routed(case, case, update=False), _routed(split, case, update=True),
                       _routed(left, case, update=True),
                       _routed(sentinel, None, update=False, category=IncidentCategory.theft)):
            producer.produce(topics.routed, key=record.id.bytes, value=record.encode())

        def did(incident: uuid.UUID) -> uuid.UUID:
            return dispatch_id(key, EventType.incident, str(incident), "mairie-35401", WORKS)

        now = datetime.now(UTC)
        ack = StatusUpdate(id=uuid.uuid4(), incident_id=case, agency_id="mairie-35401", dispatch_id=did(case),
                           status=IncidentStatus.acknowledged, at=now)
        cut = CaseSplit(id=uuid.uuid4(), incident_id=split, case_id=case, agency_id="mairie-35401",
                        service=WORKS, dispatch_id=did(split), at=now)
        for record in (ack, cut):
            producer.produce(topics.status, key=record.incident_id.bytes, value=record.encode())
        assert producer.flush(15) == 0
        records = routed_records(settings, lambda out: str(sentinel) in {
            str(r["incident_id"]) for r in redispatches(out, "escalated")}, timeout=90)
        unique = {str(r["id"]): r for r in redispatches(records, "escalated")}.values()
        escalated = Counter(str(r["incident_id"]) for r in unique)
        # The split report escalates on its own; the acknowledged case and the report left in it do not.
        assert escalated == {str(split): 1, str(sentinel): 1}, escalated
        (own,) = [r for r in unique if str(r["incident_id"]) == str(split)]
        assert str(own["previous_id"]) == str(did(split)) and own["reason"] == "ack"
        assert any(d.record_type == "CaseSplit" for d in records)  # forwarded by the router
        assert metric(metrics_url, "veille_escalation_case_splits_total", {"outcome": "split"}) == 1
    finally:
        follow.stop()
        router.stop()
