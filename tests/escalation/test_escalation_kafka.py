"""Re-routing and escalation on the real broker, with the real router and the real worker.

Each test is its own deployment (topic prefix, state dir) on the session broker, with a copy of
the example territory whose deadlines are seconds long. Nothing waits a fixed time: every
"none" is checked once a later event that must come after it has been seen.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from escalation_helpers import (
    IN_35402,
    answer,
    deployment,
    incident,
    metric,
    redispatches,
    routed_ids,
    routed_records,
    worker,
)
from hub_helpers import HubProcess, read_topics, wait_for

from veille.producers.sdk import Publisher
from veille.schemas.models import (
    IncidentCategory,
    IncidentStatus,
    RejectionReason,
    RoutedIncident,
    ServiceKind,
)
from veille.topics import Topics

pytestmark = pytest.mark.kafka
POLICE, SAFEGUARD = ServiceKind.municipal_police, ServiceKind.municipal_safeguard
SECOND = 1 / 3600  # deadlines are in hours


def publish(settings: Any, *events: Any) -> None:
    with Publisher(settings, client_id="test-escalation") as pub:
        for e in events:
            pub.publish(e)
        assert not pub.flush(30).failed


def routed(settings: Any, *incidents: Any) -> list[Any]:
    wanted = {str(i.id) for i in incidents}
    return routed_records(settings, lambda out: wanted <= routed_ids(out))


def test_refusals_re_route_to_the_next_body_up_to_the_monitoring_cell(kafka: Any, tmp_path: Path) -> None:
    settings = deployment(kafka, tmp_path, [])
    topics = Topics(settings.topic_prefix)
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    follow = worker(settings, VEILLE_REROUTE_MAX_HOPS="1").start()
    try:
        router.info("router.json")
        metrics_url = follow.info("escalations.json")["metrics"]
        moved, chained, stranger = incident(), incident(), incident()
        publish(settings, moved, chained, stranger)
        routed(settings, moved, chained, stranger)
        # pm-35401 says the burglary is in the next town: the neighbour's police gets it.
        publish(settings, answer(settings, moved, "pm-35401", POLICE, IncidentStatus.rejected,
                                 reason=RejectionReason.wrong_location, corrected=IN_35402),
                answer(settings, chained, "pm-35401", POLICE, IncidentStatus.rejected,
                       reason=RejectionReason.not_competent))
        # A body that was never dispatched refuses: the router refuses a forged dispatch id as
        # today, and a well-formed one for a body the worker never dispatched changes nothing.
        forged = answer(settings, stranger, "pm-35402", POLICE, IncidentStatus.rejected,
                        reason=RejectionReason.not_competent).model_copy(update={"dispatch_id": stranger.id})
        publish(settings, forged, answer(settings, stranger, "pm-35402", POLICE, IncidentStatus.rejected,
                                         reason=RejectionReason.not_competent))
        # Waits on what was re-routed, not on a count: a rebalance may publish a re-routing twice
        # (same id, harmless: docs/rerouting.md), the worker's first join often brings one.
        records = routed_records(settings, lambda out: {str(moved.id), str(chained.id)} <= {
            str(r["incident_id"]) for r in redispatches(out)})
        by_incident = {str(r["incident_id"]): r for r in redispatches(records)}
        first = by_incident[str(moved.id)]
        assert (first["agency_id"], first["rule"], first["step"], first["hop"]) == (
            "pm-35402", "security+rerouted", "neighbour", 1)
        assert by_incident[str(chained.id)]["agency_id"] == "mairie-35401"  # the safeguard chain
        # The safeguard service refuses too: hop limit (1 here) reached, the monitoring cell.
        publish(settings, answer(settings, chained, "mairie-35401", SAFEGUARD, IncidentStatus.rejected,
                                 reason=RejectionReason.not_competent))
        records = routed_records(settings, lambda out: any(
            r["agency_id"] == "cellule-veille" for r in redispatches(out)))
        last = {str(r["id"]): r for r in redispatches(records) if r["agency_id"] == "cellule-veille"}
        assert [(r["step"], r["hop"], str(r["previous_agency_id"])) for r in last.values()] == [
            ("hop_limit", 2, "mairie-35401")]
        # The dispatches themselves, on the new bodies' topics, as the router makes them.
        out = read_topics(settings, [topics.dispatch("pm-35402"), topics.dispatch("cellule-veille"),
                                     topics.dead_letter],
                          until=lambda o: len({t for t, _ in o}) == 3)
        dispatched = {(t.rsplit(".", 1)[-1], d.value["event_id"], d.value["rule"]) for t, d in out
                      if t != topics.dead_letter}
        assert dispatched == {("pm-35402", str(moved.id), "security+rerouted"),
                              ("cellule-veille", str(chained.id), "security+rerouted")}
        assert [d.value["reason"] for t, d in out if t == topics.dead_letter] == ["not_dispatched"]
        wait_for(lambda: metric(metrics_url, "veille_reroute_refusals_ignored_total",
                                {"why": "unknown_dispatch"}) >= 1, 30, "the stranger's refusal")
        assert str(stranger.id) not in {str(r["incident_id"]) for r in redispatches(routed_records(
            settings, lambda out: any(r["agency_id"] == "cellule-veille" for r in redispatches(out))))}
        # Every re-routing, by id, once: pm-35402 for moved, mairie-35401 then the cell for chained.
        # (Read again until all three: the read above stopped at the cell's, and the others are on
        # other partitions, which a reader may fetch later.)
        records = routed_records(settings, lambda out: len({str(r["id"]) for r in redispatches(out)}) >= 3)
        assert len({str(r["id"]) for r in redispatches(records)}) == 3
        assert metric(metrics_url, "veille_reroute_hop_limit_total") == 1
    finally:
        follow.stop()
        router.stop()


def test_a_missed_deadline_escalates_once_and_an_acknowledgement_cancels_it(kafka: Any,
                                                                           tmp_path: Path) -> None:
    settings = deployment(kafka, tmp_path, [
        {"id": "fast", "categories": ["burglary"], "acknowledge_hours": 4 * SECOND, "resolve_hours": 1},
        {"id": "later", "categories": ["theft"], "acknowledge_hours": 7 * SECOND, "resolve_hours": 1}])
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    follow = worker(settings).start()
    try:
        router.info("router.json")
        follow.info("escalations.json")
        missed, answered = incident(), incident()
        sentinel = incident(category=IncidentCategory.theft)  # due 3 s after the others
        publish(settings, missed, answered, sentinel)
        routed(settings, missed, answered, sentinel)
        publish(settings, answer(settings, answered, "pm-35401", POLICE, IncidentStatus.acknowledged))
        records = routed_records(settings, lambda out: str(sentinel.id) in {
            str(r["incident_id"]) for r in redispatches(out, "escalated")})
        # Once by id (a rebalance may publish one twice with the same id: docs/rerouting.md).
        unique = {str(r["id"]): r for r in redispatches(records, "escalated")}.values()
        escalated = Counter(str(r["incident_id"]) for r in unique)
        assert escalated == {str(missed.id): 1, str(sentinel.id): 1}
        for r in redispatches(records, "escalated"):
            assert (r["agency_id"], r["rule"], r["reason"]) == ("mairie-35401", "overdue:ack", "ack")
            assert r["routed_at"] >= r["refused_at"]  # never before the deadline
    finally:
        follow.stop()
        router.stop()


def test_a_replay_of_old_topics_fires_no_storm(kafka: Any, tmp_path: Path) -> None:
    """Two days of history read by a fresh worker: the deadlines that were met stay quiet, the
    one that was missed is escalated once."""
    settings = deployment(kafka, tmp_path, [
        {"id": "all", "acknowledge_hours": 1, "resolve_hours": 100}])
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    follow = None
    try:
        router.info("router.json")
        then = datetime.now(UTC) - timedelta(days=2)
        met = [incident(reported=then + timedelta(minutes=k)) for k in range(20)]
        missed = incident(reported=then)
        recent = [incident(category=IncidentCategory.graffiti, location=None) for _ in range(30)]
        publish(settings, *met, missed)
        routed(settings, *met, missed)
        publish(settings, *[answer(settings, i, "pm-35401", POLICE, IncidentStatus.acknowledged,
                                   at=i.reported_at + timedelta(minutes=30)) for i in met])
        publish(settings, *recent)  # the present, after the history, on every partition
        routed_records(settings, lambda out: sum(d.record_type == "StatusUpdate" for d in out) >= 20
                       and {str(i.id) for i in recent} <= routed_ids(out))
        follow = worker(settings).start()
        follow.info("escalations.json")
        records = routed_records(settings, lambda out: len(redispatches(out, "escalated")) >= 1)
        assert {(str(r["incident_id"]), str(r["id"])) for r in redispatches(records, "escalated")} == {
            (str(missed.id), str(r["id"])) for r in redispatches(records, "escalated")}
        assert len({str(r["id"]) for r in redispatches(records, "escalated")}) == 1
    finally:
        if follow is not None:
            follow.stop()
        router.stop()


def test_kill_9_and_a_second_worker_with_1000_pending_deadlines(kafka: Any, tmp_path: Path) -> None:
    """1,000 acknowledgement deadlines pending in the table; the worker is killed (kill -9), comes
    back, and a second worker joins: every deadline is escalated, by id once, none early."""
    n = 1000
    settings = deployment(kafka, tmp_path, [
        {"id": "all", "acknowledge_hours": 25 * SECOND, "resolve_hours": 1}])
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    first = worker(settings).start()
    second = None
    try:
        router.info("router.json")
        metrics_url = first.info("escalations.json")["metrics"]
        towns = ["35401", "35402", "35403", "35404", "35405", "35406"]
        incidents = [incident(municipality=towns[k % 6], location=None) for k in range(n)]
        publish(settings, *incidents)
        # Pending in the table: an acknowledgement and a resolution deadline per dispatch.
        wait_for(lambda: metric(metrics_url, "veille_escalation_pending_deadlines") >= 2 * n, 60,
                 "the deadlines in the table")
        assert metric(metrics_url, "veille_escalations_total") == 0
        first.kill()
        first.start()
        second = worker(settings, state_dir=tmp_path / "second").start()
        urls = [first.info("escalations.json")["metrics"], second.info("escalations.json")["metrics"]]
        records = routed_records(settings, lambda out: len({r["previous_id"] for r in
                                                            redispatches(out, "escalated")}) >= n,
                                 timeout=180)
        escalations = redispatches(records, "escalated")
        assert len({str(r["previous_id"]) for r in escalations}) == n  # every dispatch
        assert {str(r["incident_id"]) for r in escalations} == {str(i.id) for i in incidents}
        assert {r["reason"] for r in escalations} == {"ack"}
        early = [r for r in escalations if r["routed_at"] < r["refused_at"]]
        assert early == []
        # Both workers held partitions and fired their share (3 partitions, 2 workers).
        shares = [metric(url, "veille_escalations_total") for url in urls]
        assert all(share > 0 for share in shares) and sum(shares) >= n, shares
        doubled = len(escalations) - len({str(r["id"]) for r in escalations})
        print(f"\n{len(escalations)} escalation records for {n} deadlines ({doubled} doubled by id), "
              f"latest {max(r['routed_at'] - r['refused_at'] for r in escalations)} after its deadline")
    finally:
        if second is not None:
            second.stop()
        first.stop()
        router.stop()


def test_a_closed_incident_routed_again_starts_no_deadline(kafka: Any, tmp_path: Path) -> None:
    """The router re-delivers a routing record after a crash (its batch not committed): for an
    incident already resolved, the worker's closed marker keeps its deadlines from restarting."""
    settings = deployment(kafka, tmp_path, [
        {"id": "fast", "categories": ["burglary"], "acknowledge_hours": 3 * SECOND, "resolve_hours": 1},
        {"id": "later", "categories": ["theft"], "acknowledge_hours": 6 * SECOND, "resolve_hours": 1}])
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    follow = worker(settings).start()
    try:
        router.info("router.json")
        follow.info("escalations.json")
        closed = incident()
        publish(settings, closed)
        (record,) = [d for d in routed(settings, closed) if d.record_type == "RoutedIncident"]
        publish(settings, answer(settings, closed, "pm-35401", POLICE, IncidentStatus.resolved))
        routed_records(settings, lambda out: any(d.record_type == "StatusUpdate" for d in out))
        again = Producer(settings.kafka_client_config())
        again.produce(Topics(settings.topic_prefix).routed, key=closed.id.bytes,
                      value=RoutedIncident.from_avro(record.value).encode())
        assert again.flush(10) == 0
        sentinel = incident(category=IncidentCategory.theft)  # due after the re-delivered one
        publish(settings, sentinel)
        records = routed_records(settings, lambda out: any(
            str(r["incident_id"]) == str(sentinel.id) for r in redispatches(out, "escalated")))
        assert {str(r["incident_id"]) for r in redispatches(records, "escalated")} == {str(sentinel.id)}
    finally:
        follow.stop()
        router.stop()
