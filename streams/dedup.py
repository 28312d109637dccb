"""The router's de-duplication window: which event ids were routed, with what content, when.

In process memory and bounded (``capacity`` ids, oldest forgotten first). A restart forgets
the window; an event re-sent across a restart may then be routed twice, which at-least-once
already allows (dispatch ids are deterministic, the store deduplicates by id).

An id enters the window only once the outputs of its batch are acknowledged by Kafka: had
it been recorded before, a crash in between would make the re-delivery look like a
duplicate. Until then it is *pending* in its :class:`BatchDedup`, where it already counts
as seen for the rest of its batch and for the next batch (pipelining).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

DEDUP_WINDOW = timedelta(hours=24)
# ids remembered: about 210 bytes each, 300 MB of router memory when full (make bench)
DEDUP_CAPACITY = 1_000_000

Verdict = Literal["new", "duplicate", "conflict"]
_DIGEST_MASK = (1 << 64) - 1


def content_digest(value: bytes) -> int:
    """64 bits of BLAKE2b: the odds that a tampered re-send passes for a duplicate are 2**-64."""
    return int.from_bytes(hashlib.blake2b(value, digest_size=8).digest(), "little")


@dataclass(frozen=True, slots=True)
class Seen:
    digest: int  # of the message's bytes, see content_digest
    at: int  # epoch seconds when it was routed


class DedupWindow:
    """Recently routed event ids, oldest evicted first beyond ``capacity``.

    Each entry is held as one int (routing second << 64 | digest) rather than a ``Seen``:
    at a million ids that is about 110 MB less (benchmarks/dedup_memory.py).
    """

    def __init__(self, capacity: int = DEDUP_CAPACITY, window: timedelta = DEDUP_WINDOW) -> None:
        self.capacity = capacity
        self.seconds = window.total_seconds()
        self._ids: OrderedDict[str, int] = OrderedDict()

    def get(self, event_id: str) -> Seen | None:
        packed = self._ids.get(event_id)
        return None if packed is None else Seen(packed & _DIGEST_MASK, packed >> 64)

    def add(self, event_id: str, seen: Seen) -> None:
        self.add_packed(event_id, (seen.at << 64) | seen.digest)

    def add_packed(self, event_id: str, packed: int) -> None:
        self._ids[event_id] = packed
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def __len__(self) -> int:
        return len(self._ids)

    def batch(self, previous: BatchDedup | None = None) -> BatchDedup:
        """The window as the next batch sees it; ``previous`` is the batch still in flight."""
        return BatchDedup(self, previous)


class BatchDedup:
    """The window during one batch: reads see the window, the previous batch's pending ids and
    this batch's own; :meth:`remember` keeps an id pending, with the index of its message
    (``owner``), until :meth:`commit`."""

    def __init__(self, window: DedupWindow, previous: BatchDedup | None = None) -> None:
        self.window = window
        # Entries packed as the window packs them (second << 64 | digest): no object per id.
        self._previous: dict[str, int] = previous._local if previous is not None else {}
        self._local: dict[str, int] = {}
        self.pending: list[tuple[int, str]] = []
        self.owner = -1  # the index in the batch of the message being processed

    def _get(self, event_id: str) -> int | None:
        packed = self._local.get(event_id)
        if packed is None:
            packed = self._previous.get(event_id)
            if packed is None:
                packed = self.window._ids.get(event_id)
        return packed

    def check(self, event_id: str, value: bytes, now: float) -> Verdict:
        """``duplicate``: routed within the window with the same bytes; ``conflict``: the same
        id with other bytes (a publisher bug or a replay attack, never merged silently)."""
        previous = self._get(event_id)
        if previous is None or now - (previous >> 64) >= self.window.seconds:
            return "new"
        return "duplicate" if previous & _DIGEST_MASK == content_digest(value) else "conflict"

    def remember(self, event_id: str, value: bytes, now: float) -> None:
        self._local[event_id] = (int(now) << 64) | content_digest(value)
        self.pending.append((self.owner, event_id))

    def commit(self, delivered: Callable[[int], bool]) -> None:
        """Move the pending ids whose message ``delivered(owner)`` says was routed into the window."""
        for owner, event_id in self.pending:
            if delivered(owner):
                self.window.add_packed(event_id, self._local[event_id])


__all__ = ["DEDUP_CAPACITY", "DEDUP_WINDOW", "BatchDedup", "DedupWindow", "Seen", "Verdict",
           "content_digest"]
