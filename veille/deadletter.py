"""Bounds on dead-lettering, shared by every consuming component.

A dead-letter topic is for the odd bad message. When most of a stream is invalid (a
publisher deployed a broken encoder, a topic was pointed at the wrong producer), carrying
on would only copy the whole stream into the dead-letter topic and hide the incident, so
the component stops loudly instead (in the spirit of arroyo's ``DlqLimit``). Its offsets
for the offending batch are not committed: after the fix, the messages are read again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


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
