"""Dead letters, bounded in size, and the limit on dead-lettering.

A dead-letter topic is for the odd bad message. When most of a stream is invalid (a
deployment mismatch, a topic pointed at the wrong producer), carrying on would only copy the
whole stream into the dead-letter topic and hide the incident, so the component stops loudly
instead (in the spirit of arroyo's ``DlqLimit``), without committing the offending batch.
The sink applies ``DeadLetterLimit`` to its whole input (the router's outputs, one trusted
publisher). The router reads many publishers: one of them flooding garbage must not stop it
for everyone, so it judges each source apart (``veille.streams.quarantine``) and writes a
quarantined source's garbage as *range letters* (``make_range_letter``).
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from veille.kafka import Message
from veille.schemas.models import DeadLetter

# A dead letter must always fit in a Kafka message, whatever it carries: the original bytes
# are cut to this prefix, with the full length and digest (the whole message stays in its
# source topic, at the offset the letter names). 1 MiB on an intake topic must not turn into
# a dead letter larger than the producer's limit (which once stopped the router).
MAX_ORIGINAL_BYTES = 64 * 1024
MAX_KEY_BYTES = 1024
MAX_DETAIL_CHARS = 2000
# A range letter (a quarantined source) keeps the first original as above and a few more,
# shorter: enough to see what the garbage looks like, bounded whatever the range.
RANGE_SAMPLES = 3
MAX_SAMPLE_BYTES = 4 * 1024


def make_dead_letter(*, component: str, reason: str, detail: str, topic: str, partition: int,
                     offset: int, key: bytes | None, value: bytes | None,
                     failed_at: datetime | None = None, attempts: int = 1,
                     source: str | None = None) -> DeadLetter:
    """The one way a component builds a dead letter: bounded in size, whatever the input."""
    return DeadLetter(
        reason=reason, message=detail[:MAX_DETAIL_CHARS], component=component, source_topic=topic,
        source_partition=partition, source_offset=offset,
        original_key=None if key is None else key[:MAX_KEY_BYTES],
        original_value=None if value is None else value[:MAX_ORIGINAL_BYTES],
        original_size=None if value is None else len(value),
        original_sha256=None if value is None else hashlib.sha256(value).hexdigest(),
        attempts=attempts, failed_at=failed_at or datetime.now(UTC), source=source,
    )


def make_range_letter(*, component: str, source: str, messages: Sequence[Message],
                      reasons: Sequence[str], failed_at: datetime | None = None) -> DeadLetter:
    """One letter for many invalid messages of one quarantined source on one partition
    (``veille.streams.quarantine``): it counts for ``range_count`` dead letters, lists their
    offsets, and digests their values so that a replay from the source topic can be checked."""
    first, last = messages[0], messages[-1]
    digest = hashlib.sha256()
    for msg in messages:
        digest.update(hashlib.sha256(msg.value or b"").digest())
    by_reason = Counter(reasons)
    detail = (f"source {source} is quarantined (mostly invalid): {len(messages)} invalid messages "
              f"between offsets {first.offset} and {last.offset} of {first.topic}[{first.partition}] "
              "in one letter (" + ", ".join(f"{r}: {n}" for r, n in by_reason.most_common()) + ")")
    letter = make_dead_letter(component=component, reason="quarantined_source", detail=detail,
                              topic=first.topic, partition=first.partition, offset=first.offset,
                              key=first.key, value=first.value, failed_at=failed_at, source=source)
    return letter.model_copy(update={
        "range_last_offset": last.offset, "range_count": len(messages),
        "range_sha256": digest.hexdigest(), "range_offsets": [m.offset for m in messages],
        "samples": [(m.value or b"")[:MAX_SAMPLE_BYTES] for m in messages[1:1 + RANGE_SAMPLES]],
    })


class TooManyInvalid(RuntimeError):
    """Most of the recent stream was invalid: stop rather than dead-letter everything."""


@dataclass
class DeadLetterLimit:
    max_invalid_ratio: float = 0.5  # over the last `window` messages...
    window: int = 1000
    min_messages: int = 100  # ...once at least this many were seen
    max_consecutive: int = 500  # or this many invalid messages in a row
    _recent: deque[bool] = field(default_factory=deque, repr=False)
    _invalid: int = 0
    _consecutive: int = 0

    def record(self, invalid: bool) -> None:
        """Count one message; raise ``TooManyInvalid`` when the limit is crossed."""
        self._recent.append(invalid)
        self._invalid += invalid
        if len(self._recent) > self.window:
            self._invalid -= self._recent.popleft()
        self._consecutive = self._consecutive + 1 if invalid else 0
        if self._consecutive >= self.max_consecutive:
            raise TooManyInvalid(f"{self._consecutive} invalid messages in a row")
        seen = len(self._recent)
        if seen >= self.min_messages and self._invalid / seen > self.max_invalid_ratio:
            raise TooManyInvalid(
                f"{self._invalid} of the last {seen} messages were invalid "
                f"(limit {self.max_invalid_ratio:.0%})")
