"""What one delivery attempt came to, whatever the method: an :class:`Attempt`, which becomes a
``DeliveryReceipt`` once the runner numbers it.

HTTP answers are classified once here for webhooks and Open311 (:func:`http_outcome`):
2xx delivered; 410 disabled (the receiver asks never to be sent again); 408, 425, 429 and 5xx
retry; 3xx (redirects are not followed) and other 4xx failed: the destination refused it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from veille.schemas.models import MAX_RECEIPT_REPLY, DeliveryMethod, DeliveryOutcome, DeliveryReceipt

RETRYABLE_4XX = frozenset({408, 425, 429})


class Attempt(BaseModel):
    """One attempt's outcome. ``reference`` is what the destination named it (an Open311
    service_request_id or token), for reading its status back."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    method: DeliveryMethod
    outcome: DeliveryOutcome
    status_code: int | None = None
    reply: str | None = None
    latency_ms: int = Field(ge=0)
    reference: str | None = None

    @property
    def delivered(self) -> bool:
        return self.outcome is DeliveryOutcome.delivered

    def receipt(self, dispatch_id: UUID, agency_id: str, attempt: int,
                at: datetime | None = None) -> DeliveryReceipt:
        return DeliveryReceipt(dispatch_id=dispatch_id, agency_id=agency_id, method=self.method,
                               attempt=attempt, outcome=self.outcome, status_code=self.status_code,
                               reply=self.reply, latency_ms=self.latency_ms, at=at or datetime.now(UTC))


def http_outcome(status: int) -> DeliveryOutcome:
    if 200 <= status < 300:
        return DeliveryOutcome.delivered
    if status == 410:
        return DeliveryOutcome.disabled
    if status >= 500 or status in RETRYABLE_4XX:
        return DeliveryOutcome.retry
    return DeliveryOutcome.failed


def bounded(text: str | None, limit: int = MAX_RECEIPT_REPLY) -> str | None:
    """A reply fit for a receipt: one line, at most ``limit`` characters."""
    if text is None:
        return None
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class Stopwatch:
    """Milliseconds since it was made (monotonic clock)."""

    def __init__(self) -> None:
        self._start = time.monotonic()

    def ms(self) -> int:
        return max(0, round((time.monotonic() - self._start) * 1000))
