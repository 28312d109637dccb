"""The notifier's state, in memory, by partition: per incident with a consent, its
:class:`Track` and the state last told. Pure: no Kafka here (``veille/notify/changelog.py``
writes and restores it).

Its durable copy is the compacted changelog topic ``<prefix>.notify.tracks``, the way faust
tables and Kafka Streams state stores keep theirs: keyed by the incident id's 16 bytes like
``<prefix>.routed``, and the state of routed partition *p* lives in changelog partition *p*. A
notifier assigned routed partitions restores the same-numbered changelog partitions before any
record of them (:meth:`TrackTable.restore_from`), and drops them when they are revoked. Ids,
statuses and times only, never a contact (those stay on the consent topic); a tombstone when
the incident's consent is withdrawn or its retention ended.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from veille.kafka import Message
from veille.notify.changes import State, Track

log = logging.getLogger("veille.notify.tracks")


@dataclass
class Entry:
    track: Track
    told: State | None

    def encode(self, incident_id: UUID) -> bytes:
        return json.dumps({"incident_id": str(incident_id), "track": self.track.as_json(),
                           "told": self.told.as_json() if self.told else None},
                          separators=(",", ":")).encode()

    @classmethod
    def decode(cls, value: bytes) -> Entry:
        data: dict[str, Any] = json.loads(value)
        return cls(Track.from_json(data["track"]), State.from_json(data.get("told")))


def key_of(incident_id: UUID) -> bytes:
    """The key of both ``<prefix>.routed`` (the router's) and the changelog."""
    return incident_id.bytes


class TrackTable:
    """Entries of the partitions this notifier holds: ``{partition: {incident id: Entry}}``."""

    def __init__(self) -> None:
        self._parts: dict[int, dict[UUID, Entry]] = {}
        self.skipped = 0

    # -- restore (changelog records, in order) --------------------------------------------------

    def restore_from(self, item: Message) -> None:
        """Apply one changelog record: the latest value of a key wins, a tombstone removes it."""
        part = self._parts.setdefault(item.partition, {})
        try:
            incident_id = UUID(bytes=item.key or b"")
        except ValueError:
            self.skipped += 1
            log.error("%s[%d]@%d: not an incident id as key: skipped", item.topic, item.partition,
                      item.offset)
            return
        if item.value is None:
            part.pop(incident_id, None)
            return
        try:
            part[incident_id] = Entry.decode(item.value)
        except (ValueError, KeyError, TypeError) as exc:
            self.skipped += 1
            log.error("%s[%d]@%d is not a notifier entry (%s): skipped", item.topic, item.partition,
                      item.offset, type(exc).__name__)

    def hold(self, partitions: set[int]) -> None:
        """Keep only these partitions (the others were revoked); the new ones start empty."""
        for p in set(self._parts) - partitions:
            del self._parts[p]
        for p in partitions:
            self._parts.setdefault(p, {})

    @property
    def partitions(self) -> frozenset[int]:
        return frozenset(self._parts)

    # -- reading and writing ------------------------------------------------------------------

    def get(self, partition: int, incident_id: UUID) -> Entry | None:
        return self._parts.get(partition, {}).get(incident_id)

    def put(self, partition: int, incident_id: UUID, entry: Entry) -> None:
        self._parts.setdefault(partition, {})[incident_id] = entry

    def delete(self, partition: int, incident_id: UUID) -> None:
        self._parts.get(partition, {}).pop(incident_id, None)

    def entries(self) -> Iterator[tuple[int, UUID, Entry]]:
        for partition, part in list(self._parts.items()):
            for incident_id, entry in list(part.items()):
                yield partition, incident_id, entry

    def closed_before(self, iso: str) -> Iterator[tuple[int, UUID]]:
        return ((p, i) for p, i, e in self.entries()
                if e.track.closed_at is not None and e.track.closed_at <= iso)

    def __contains__(self, incident_id: object) -> bool:
        return any(incident_id in part for part in self._parts.values())

    def __len__(self) -> int:
        return sum(len(part) for part in self._parts.values())
