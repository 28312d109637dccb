"""Bounds on dead-lettering, shared by every consuming component.

A dead-letter topic is for the odd bad message. When most of a stream is invalid (a
publisher deployed a broken encoder, a topic was pointed at the wrong producer), carrying
on would only copy the whole stream into the dead-letter topic and hide the incident, so
the component stops loudly instead (in the spirit of arroyo's ``DlqLimit``). Its offsets
for the offending batch are not committed: after the fix, the messages are read again.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from veille.schemas.models import DeadLetter

# A dead letter must always fit in a Kafka message, whatever it carries: the original bytes
# are cut to this prefix, with the full length and digest (the whole message stays in its
# source topic, at the offset the letter names). 1 MiB on an intake topic must not turn into
# a dead letter larger than the producer's limit (which once stopped the router).
MAX_ORIGINAL_BYTES = 64 * 1024
MAX_KEY_BYTES = 1024
MAX_DETAIL_CHARS = 2000


def make_dead_letter(*, component: str, reason: str, detail: str, topic: str, partition: int,
                     offset: int, key: bytes | None, value: bytes | None,
                     failed_at: datetime | None = None, attempts: int = 1) -> DeadLetter:
    """The one way a component builds a dead letter: bounded in size, whatever the input."""
    return DeadLetter(
        reason=reason, message=detail[:MAX_DETAIL_CHARS], component=component, source_topic=topic,
        source_partition=partition, source_offset=offset,
        original_key=None if key is None else key[:MAX_KEY_BYTES],
        original_value=None if value is None else value[:MAX_ORIGINAL_BYTES],
        original_size=None if value is None else len(value),
        original_sha256=None if value is None else hashlib.sha256(value).hexdigest(),
        attempts=attempts, failed_at=failed_at or datetime.now(UTC),
    )


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
