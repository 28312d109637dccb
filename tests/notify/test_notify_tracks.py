"""The notifier's state table restored from its changelog, without a broker: the latest entry of a
key wins, a tombstone removes it, a partition revoked is dropped, garbage is skipped, no contact
is ever in an entry."""

from __future__ import annotations

import uuid

from notify_helpers import routed, status

from veille.kafka import Message, partition_for
from veille.notify import changes
from veille.notify.changes import Phase, State, Track
from veille.notify.tracks import Entry, TrackTable, key_of

TOPIC = "v.notify.tracks"


def record(partition: int, offset: int, incident_id: uuid.UUID, entry: Entry | None) -> Message:
    return Message(TOPIC, partition, offset, key_of(incident_id),
                   entry.encode(incident_id) if entry is not None else None)


def folded(incident_id: uuid.UUID, *statuses: str) -> Entry:
    track = Track()
    changes.apply_routed(track, routed(incident_id, "pm-35401"))
    for value in statuses:
        changes.apply_status(track, status(incident_id, "pm-35401", value))
    return Entry(track, changes.overall(track))


def test_restore_keeps_the_latest_entry_of_each_key_and_honours_tombstones() -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    table = TrackTable()
    table.hold({0, 1})
    log = [record(0, 0, a, folded(a)), record(0, 1, a, folded(a, "acknowledged")),
           record(1, 0, b, folded(b, "on_site")), record(0, 2, c, folded(c)), record(0, 3, c, None)]
    for item in log:
        table.restore_from(item)
    entry_a = table.get(0, a)
    assert entry_a is not None and entry_a.told == State(Phase.acknowledged, 1)
    assert entry_a.track.bodies["pm-35401"].status == "acknowledged"
    assert table.get(1, b) is not None and table.get(0, b) is None  # looked up in its partition
    assert c not in table and len(table) == 2
    # Replaying the same changelog gives the same table (a second restore is harmless).
    again = TrackTable()
    for item in log:
        again.restore_from(item)
    assert [(p, i, e.encode(i)) for p, i, e in again.entries()] == \
        [(p, i, e.encode(i)) for p, i, e in table.entries()]


def test_revoked_partitions_are_dropped_and_new_ones_start_empty() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    table = TrackTable()
    table.put(0, a, folded(a))
    table.put(2, b, folded(b))
    table.hold({2, 1})
    assert a not in table and b in table and table.partitions == {1, 2}


def test_garbage_in_the_changelog_is_skipped_not_fatal() -> None:
    a = uuid.uuid4()
    table = TrackTable()
    table.restore_from(Message(TOPIC, 0, 0, b"not-16-bytes", b"{}"))
    table.restore_from(Message(TOPIC, 0, 1, key_of(a), b"\xff not json"))
    table.restore_from(Message(TOPIC, 0, 2, key_of(a), b'{"told": null}'))
    table.restore_from(record(0, 3, a, folded(a, "resolved")))
    assert table.skipped == 3 and table.get(0, a) is not None


def test_an_entry_round_trips_and_holds_ids_statuses_and_times_only() -> None:
    a = uuid.uuid4()
    entry = folded(a, "acknowledged", "resolved")
    entry.track.closed_at = "2026-01-02T03:04:05+00:00"
    value = entry.encode(a)
    back = Entry.decode(value)
    assert back.encode(a) == value and back.told == entry.told
    text = value.decode()
    assert "@" not in text and "reporter" not in text and "address" not in text
    assert key_of(a) == a.bytes  # the routed topic's key: the router writes incident.id.bytes


def test_closed_before_finds_the_entries_past_their_retention() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    table = TrackTable()
    old, new = folded(a, "resolved"), folded(b, "resolved")
    old.track.closed_at, new.track.closed_at = "2026-01-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00"
    table.put(1, a, old)
    table.put(2, b, new)
    assert list(table.closed_before("2026-02-01T00:00:00+00:00")) == [(1, a)]


def test_partition_for_is_crc32_of_the_key() -> None:
    # librdkafka's consistent_random: the known CRC-32 of "123456789" is 0xCBF43926.
    assert partition_for(b"123456789", 1 << 32) == 0xCBF43926
    assert all(0 <= partition_for(uuid.uuid4().bytes, 3) < 3 for _ in range(50))
