"""The publishing SDK against the real broker: round trips, keys, rejections, failures."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from producer_helpers import alert, consume, incident, isolated_settings, message_count, status

from veille.config import Settings
from veille.producers.sdk import DeliveryReport, Publisher, Rejected
from veille.schemas import codec
from veille.schemas.models import Alert, Channel, Incident, StatusUpdate
from veille.topics import Topics


@pytest.fixture(scope="module")
def settings(kafka: Any) -> Settings:
    return isolated_settings(kafka.settings, "sdk")


def test_every_channel_and_type_round_trips(settings: Settings) -> None:
    topics = Topics(settings.topic_prefix)
    incidents = [Incident.model_validate(incident(channel=c.value, municipality=f"3540{i % 6 + 1}"))
                 for i, c in enumerate(Channel)]
    the_alert = Alert.model_validate(alert())
    update = StatusUpdate.model_validate(status(str(incidents[0].id)))
    reports: list[DeliveryReport] = []
    with Publisher(settings) as publisher:
        for inc in incidents:
            publisher.publish_incident(inc, on_result=reports.append)
        publisher.publish_alert(the_alert, on_result=reports.append)
        publisher.publish_status(update, on_result=reports.append)
        summary = publisher.flush(20)
    assert summary.ok and summary.acknowledged == len(Channel) + 2
    assert all(r.ok and r.offset is not None for r in reports)
    assert summary.published[("Incident", "sensor")] == 1
    assert summary.acknowledged_by[("Alert", "agency")] == 1

    by_id = {str(i.id): i for i in incidents}
    intake = sorted({topics.intake(i.municipality) for i in incidents})
    for msg in consume(settings, intake, len(incidents)):
        got = Incident.decode(msg.value())
        assert got == by_id.pop((msg.key() or b"").decode())
        assert msg.topic() == topics.intake(got.municipality)
    assert not by_id, "every channel's incident is on its municipality's intake topic"

    (msg,) = consume(settings, [topics.alerts], 1)
    assert (msg.key() or b"").decode() == the_alert.identifier and Alert.decode(msg.value()) == the_alert
    (msg,) = consume(settings, [topics.status], 1)
    assert (msg.key() or b"").decode() == str(update.incident_id)
    assert StatusUpdate.decode(msg.value()) == update


def test_status_updates_of_one_incident_stay_in_order(settings: Settings) -> None:
    s = isolated_settings(settings, "order")
    incident_id = str(uuid.uuid4())
    steps = ["received", "acknowledged", "dispatched", "on_site", "resolved"]
    with Publisher(s) as publisher:
        for step in steps:
            publisher.publish_status(status(incident_id, status=step))
        assert publisher.flush(20).acknowledged == len(steps)
    msgs = consume(s, [Topics(s.topic_prefix).status], len(steps))
    assert len({m.partition() for m in msgs}) == 1
    assert [StatusUpdate.decode(m.value()).status.value for m in msgs] == steps


def test_producer_is_idempotent_on_the_broker(settings: Settings) -> None:
    stats: list[dict[str, Any]] = []
    publisher = Publisher(settings, extra_config={"statistics.interval.ms": 100,
                                                  "stats_cb": lambda raw: stats.append(json.loads(raw))})
    assert publisher.config["enable.idempotence"] is True and publisher.config["acks"] == "all"
    assert publisher.config["delivery.timeout.ms"] == settings.delivery_timeout_ms
    assert publisher.config["linger.ms"] == settings.linger_ms
    publisher.publish_incident(incident())
    assert publisher.flush(20).acknowledged == 1
    deadline = time.monotonic() + 5
    while not (stats and stats[-1].get("eos", {}).get("idemp_state") == "Assigned"):
        assert time.monotonic() < deadline, stats[-1:] or "no statistics"
        publisher.poll(0.1)
    # The broker assigned a producer id: librdkafka really runs the idempotent protocol.
    assert stats[-1]["eos"]["producer_id"] >= 0
    publisher.close()


def test_invalid_events_never_reach_kafka(settings: Settings) -> None:
    s = isolated_settings(settings, "rej")
    topics = Topics(s.topic_prefix)
    with Publisher(s, known_municipalities={"35401"}) as publisher:
        with pytest.raises(Rejected) as info:
            publisher.publish_incident(incident(severity="apocalyptic", location={"lat": 48, "lon": 200}))
        assert {(e.field, e.reason) for e in info.value.errors} == {
            ("severity", "Input should be 'minor', 'moderate', 'severe' or 'critical'"),
            ("location.lon", "Input should be less than or equal to 180"),
        }
        with pytest.raises(Rejected) as info:
            publisher.publish_incident(incident(municipality="35402"))
        assert info.value.reason == "unknown_municipality"
        assert info.value.errors[0].field == "municipality"
        with pytest.raises(Rejected):
            publisher.publish_alert(alert(infos=[]))
        with pytest.raises(Rejected):
            publisher.publish_status(status("not-a-uuid"))
        outcome = publisher.publish_many([incident(), {"type": "incident", "category": "flood"}, incident()])
        assert outcome.queued == 2 and [i for i, _ in outcome.rejected] == [1]
        summary = publisher.flush(20)
    assert summary.acknowledged == 2 and not summary.failed
    all_topics = [topics.intake(m) for m in ("35401", "35402")] + [topics.alerts, topics.status]
    assert message_count(s, all_topics) == 2  # only the two valid ones of publish_many


def test_acknowledged_ids_are_exposed(settings: Settings) -> None:
    records = [incident() for _ in range(500)]
    with Publisher(settings) as publisher:
        assert publisher.publish_many(records).queued == 500
        summary = publisher.flush(30)
        assert summary.acknowledged == 500 and summary.pending == 0
        assert sorted(publisher.acknowledged_ids) == sorted(r["id"] for r in records)


def test_undeliverable_events_are_reported_not_dropped() -> None:
    # A closed port: the broker never answers, every delivery must come back as failed.
    s = Settings(bootstrap_servers="127.0.0.1:1", delivery_timeout_ms=1500, linger_ms=1,
                 topic_prefix="nowhere")
    reports: list[DeliveryReport] = []
    publisher = Publisher(s, extra_config={"log_level": 0})
    ids = [publisher.publish_incident(incident(), on_result=reports.append).event_id for _ in range(3)]
    summary = publisher.close(timeout=15)
    assert summary.acknowledged == 0 and summary.pending == 0
    assert [event_id for event_id, _ in summary.failed] == ids
    assert all("MSG_TIMED_OUT" in error for _, error in summary.failed)
    assert [r.ok for r in reports] == [False] * 3
    assert publisher.acknowledged_ids == []


def test_v1_incident_decodes_with_the_current_model(settings: Settings) -> None:
    s = isolated_settings(settings, "evo")
    topic = Topics(s.topic_prefix).intake("35401")
    current = Incident.model_validate(incident(address="1 rue X"))
    v1 = current.to_avro()
    del v1["address"], v1["attachments"]
    payload = codec.encode("Incident", v1, version=1)
    assert codec.decode(payload).writer_version == 1
    from confluent_kafka import Producer

    producer = Producer(s.kafka_client_config())  # an old publisher, outside the SDK
    producer.produce(topic, payload, str(current.id).encode())
    assert producer.flush(10) == 0
    (msg,) = consume(s, [topic], 1)
    got = Incident.decode(msg.value())
    assert got.address is None and got.attachments == []
    assert got == current.model_copy(update={"address": None})
