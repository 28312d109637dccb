"""A second notifier takes the partitions over, with a fresh state dir: its state comes from the
changelog topic alone. Nothing told twice, nothing forgotten; the changelog is co-partitioned with
the routed topic, holds no contact, and a withdrawn consent's entry leaves it by a tombstone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from hub_helpers import HubProcess, hub_settings, wait_for
from notify_helpers import free_port, routed, status
from test_notifier import caught_up, mails_to

from veille.config import Settings
from veille.kafka import partition_for
from veille.local.receivers import Mailbox
from veille.notify.consent import ConsentWriter
from veille.notify.tracks import Entry
from veille.schemas.models import NotificationConsent, RoutedIncident, StatusUpdate
from veille.topics import Topics

pytestmark = pytest.mark.kafka

AGENCY = "pm-35401"
RESIDENTS = 6  # enough for every partition of the routed topic (3) to hold some


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        yield box, port
    finally:
        smtp.stop()


def publish(settings: Settings, *records: RoutedIncident | StatusUpdate) -> None:
    """As the router writes them: key = the incident id's bytes, the default partitioner."""
    producer = Producer(settings.kafka_client_config())
    for record in records:
        key = record.id if isinstance(record, RoutedIncident) else record.incident_id
        producer.produce(Topics(settings.topic_prefix).routed, key=key.bytes, value=record.encode())
    assert producer.flush(10) == 0


def read_all(settings: Settings, topic: str) -> list[tuple[int, bytes, bytes | None]]:
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"t-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out: list[tuple[int, bytes, bytes | None]] = []
        seen = {p: 0 for p in parts}
        while any(seen[p] < ends[p] for p in parts):
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            out.append((msg.partition() or 0, bytes(msg.key() or b""), msg.value()))
            seen[msg.partition() or 0] = (msg.offset() or 0) + 1
        return out
    finally:
        consumer.close()


def latest(records: list[tuple[int, bytes, bytes | None]]) -> dict[bytes, bytes | None]:
    return {key: value for _, key, value in records}


def test_a_second_notifier_takes_over_from_the_changelog(kafka: Any, tmp_path: Path,
                                                         mailbox: tuple[Mailbox, int]) -> None:
    box, smtp_port = mailbox
    settings = hub_settings(kafka.settings, tmp_path / "first")
    second = settings.model_copy(update={"state_dir": tmp_path / "second"})  # same deployment, fresh dir
    env = {"VEILLE_DELIVERY_SMTP_HOST": "127.0.0.1", "VEILLE_DELIVERY_SMTP_PORT": str(smtp_port),
           "VEILLE_DELIVERY_SMTP_SECURITY": "none", "VEILLE_NOTIFY_SWEEP_SECONDS": "0.5",
           # the first one's static membership ends with its session, not with a LeaveGroup
           "VEILLE_SINK_SESSION_SECONDS": "6"}
    topics = Topics(settings.topic_prefix)
    incidents = [uuid.uuid4() for _ in range(RESIDENTS)]
    address = {i: f"resident{n}@example.fr" for n, i in enumerate(incidents)}
    writer = ConsentWriter(settings, "test-takeover-consents")
    for i in incidents:
        assert writer.write(NotificationConsent(incident_id=i, reference="ABCD-EFGH-JKMN-PQRS",
                                                channel="email", address=address[i],
                                                consented_at=datetime.now(UTC)))
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    first = HubProcess(settings, "notify", "run", "--metrics-port", "0", env=env).start()
    try:
        first.info("notify.json")
        for i in incidents:
            publish(settings, routed(i, AGENCY, at=t0), status(i, AGENCY, "acknowledged",
                                                               at=t0 + timedelta(minutes=1)))
        wait_for(lambda: all(len(mails_to(box, a)) == 1 for a in address.values()), 60,
                 "the acknowledgements")
        wait_for(lambda: caught_up(settings), 60, "the first notifier's commits")
    finally:
        first.stop()
    # Meanwhile: each body is on site; one routing record comes again (a re-delivery).
    for i in incidents:
        publish(settings, status(i, AGENCY, "on_site", at=t0 + timedelta(minutes=2)))
    publish(settings, routed(incidents[0], AGENCY, at=t0))
    successor = HubProcess(second, "notify", "run", "--metrics-port", "0", env=env).start()
    try:
        successor.info("notify.json")
        # Nothing forgotten: without the first one's state it would not know these incidents.
        wait_for(lambda: all(len(mails_to(box, a)) == 2 for a in address.values()), 90,
                 "the on-site messages")
        wait_for(lambda: caught_up(settings), 60, "the successor's commits")
        # Nothing told twice: an older acknowledgement re-delivered is not told again either.
        publish(settings, status(incidents[1], AGENCY, "acknowledged", at=t0 + timedelta(minutes=1)))
        wait_for(lambda: caught_up(settings), 60, "the re-delivery read")
        for i in incidents:
            subjects = [m["Subject"] for m in mails_to(box, address[i])]
            told = [s.rsplit(": ", 1)[-1] for s in subjects]
            assert told == ["pris en compte", "intervention en cours"], subjects
        assert len(box.messages) == 2 * RESIDENTS
        assert "restored" in successor.log()
        # Co-partitioned: each incident's entry is in the changelog partition of its routed
        # records, which is the partition the default partitioner gives its key.
        routed_parts = {key: p for p, key, _ in read_all(settings, topics.routed)}
        changelog = read_all(settings, topics.notify_tracks)
        assert {key for _, key, _ in changelog} == {i.bytes for i in incidents}
        for partition, key, value in changelog:
            assert partition == routed_parts[key] == partition_for(key, settings.partitions)
            assert value is not None and b"@" not in value  # ids, statuses, times: no contact
        entry = Entry.decode(latest(changelog)[incidents[2].bytes] or b"")
        assert entry.told is not None and entry.told.phase.value == "on_site"
        # A withdrawn consent (an unsubscribe): its entry leaves the changelog by a tombstone.
        assert writer.withdraw(incidents[3])
        wait_for(lambda: latest(read_all(settings, topics.notify_tracks)).get(incidents[3].bytes, b"")
                 is None, 60, "the entry's tombstone")
    finally:
        successor.stop()
        writer.close()
    for proc in (first, successor):
        assert "@example.fr" not in proc.log()


def test_restore_reads_only_the_assigned_partitions_to_their_end(kafka: Any, tmp_path: Path) -> None:
    """The restore of a partition holding many entries (measured, not timed), the others left out;
    a tombstone as the last record of a partition leaves nothing behind."""
    import time

    from notify_helpers import routed as routing

    from veille.notify import changes
    from veille.notify.changelog import TrackChangelog
    from veille.notify.changes import Track
    from veille.notify.tracks import TrackTable

    settings = hub_settings(kafka.settings, tmp_path)
    topic = Topics(settings.topic_prefix).notify_tracks
    producer = Producer(settings.kafka_client_config())
    count = 20_000
    ids = [uuid.uuid4() for _ in range(count)]
    for n, i in enumerate(ids):
        track = Track()
        changes.apply_routed(track, routing(i, AGENCY))
        producer.produce(topic, key=i.bytes, value=Entry(track, changes.overall(track)).encode(i),
                         partition=n % 2)
        producer.poll(0)
    producer.produce(topic, key=ids[1].bytes, value=None, partition=1)  # the last record of partition 1
    assert producer.flush(30) == 0
    changelog = TrackChangelog(settings, "test-restore")
    try:
        began = time.monotonic()
        table = TrackTable()
        changelog.restore([0], table)
        took = time.monotonic() - began
        print(f"\nrestored {len(table)} entries of one partition in {took:.2f}s")
        assert len(table) == count // 2 and table.partitions == {0}
        assert table.get(0, ids[0]) is not None and ids[1] not in table
        other = TrackTable()
        changelog.restore([1, 2], other)
        assert len(other) == count // 2 - 1 and ids[1] not in other and other.partitions == {1, 2}
    finally:
        changelog.close()
