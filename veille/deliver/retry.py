"""When to try a destination again, and when a dispatch counts as undelivered. Pure: the caller
passes the clock and, for tests, the random source.

Backoff is per *destination* (an agency's webhook URL, its SMTP recipients, its Open311
endpoint), not per dispatch: while a destination fails, all its dispatches wait behind one timer,
and other destinations are not touched. Delays are exponential with full jitter (a uniform draw
between 0 and ``base * 2**(failures - 1)``, capped), so many deliverers hitting one recovering
receiver do not retry in step. Outcomes move the timer:

* delivered: the destination is healthy again (no wait);
* retry (unreachable, timeout, 5xx, 408, 429, SMTP 4xx): the next backoff step;
* failed (the destination refused: other 4xx, SMTP 5xx): the longest delay, between half the
  cap and the cap; a refusal is usually fixed by a person, not by time;
* disabled (HTTP 410): nothing more is sent until :meth:`Destinations.enable` (its
  configuration changed).

A dispatch is *undelivered* once it has waited ``undelivered_after`` since it was routed without
being delivered: its receipts say ``undelivered`` instead of retry or failed, the console lists
it first, and it is still retried: nothing is dropped.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from veille.deliver.settings import DeliverySettings
from veille.schemas.models import DeliveryOutcome

Random = Callable[[], float]  # uniform in [0, 1)


@dataclass(frozen=True)
class Backoff:
    base_seconds: float = 1.0
    max_seconds: float = 300.0

    def __post_init__(self) -> None:
        if not 0 < self.base_seconds <= self.max_seconds:
            raise ValueError("backoff needs 0 < base_seconds <= max_seconds")

    def ceiling(self, failures: int) -> float:
        """The upper bound of the wait after ``failures`` consecutive failures (0 for none)."""
        if failures <= 0:
            return 0.0
        exponent = min(failures - 1, 64)  # 2**64 * base is beyond any cap: no overflow
        return min(self.max_seconds, self.base_seconds * 2.0**exponent)

    def delay(self, failures: int, rand: Random = random.random) -> float:
        """Full jitter: uniform between 0 and the ceiling."""
        return rand() * self.ceiling(failures)

    def refused_delay(self, rand: Random = random.random) -> float:
        """After a refusal: between half the cap and the cap."""
        return self.max_seconds * (0.5 + 0.5 * rand())


@dataclass
class DestinationState:
    failures: int = 0
    next_attempt_at: float = 0.0  # on the caller's clock (monotonic seconds)
    disabled: bool = False
    last_outcome: DeliveryOutcome | None = None


@dataclass
class Destinations:
    """The backoff timer of every destination, keyed as the caller likes (e.g. agency + method + URL)."""

    backoff: Backoff = field(default_factory=Backoff)
    rand: Random = random.random
    states: dict[Hashable, DestinationState] = field(default_factory=dict)

    def state(self, key: Hashable) -> DestinationState:
        return self.states.setdefault(key, DestinationState())

    def wait(self, key: Hashable, now: float) -> float:
        """Seconds before ``key`` may be tried (0: now; infinity: disabled)."""
        state = self.states.get(key)
        if state is None:
            return 0.0
        if state.disabled:
            return math.inf
        return max(0.0, state.next_attempt_at - now)

    def ready(self, key: Hashable, now: float) -> bool:
        return self.wait(key, now) == 0.0

    def record(self, key: Hashable, outcome: DeliveryOutcome, now: float) -> float:
        """Account for an attempt's outcome; returns the wait before the next attempt."""
        state = self.state(key)
        state.last_outcome = outcome
        if outcome is DeliveryOutcome.delivered:
            state.failures, state.next_attempt_at = 0, now
            return 0.0
        if outcome is DeliveryOutcome.disabled:
            state.disabled = True
            return math.inf
        if now < state.next_attempt_at:
            # An attempt that was already in flight when another one to the same destination
            # failed: the same outage, not a further step (with a few attempts in flight at
            # once, each failure counted would grow the wait several times too fast).
            return state.next_attempt_at - now
        state.failures += 1
        if outcome is DeliveryOutcome.failed:
            delay = self.backoff.refused_delay(self.rand)
        else:  # retry (and undelivered, which is a retry of an old dispatch)
            delay = self.backoff.delay(state.failures, self.rand)
        state.next_attempt_at = now + delay
        return delay

    def enable(self, key: Hashable) -> None:
        """The destination's configuration changed: start afresh."""
        self.states.pop(key, None)


@dataclass(frozen=True)
class UndeliveredPolicy:
    after: timedelta = timedelta(minutes=30)

    def is_undelivered(self, routed_at: datetime, now: datetime) -> bool:
        return now - routed_at >= self.after

    def receipt_outcome(self, outcome: DeliveryOutcome, routed_at: datetime,
                        now: datetime) -> DeliveryOutcome:
        """What a receipt says: retry and failed become undelivered once the dispatch is too old."""
        if outcome in (DeliveryOutcome.retry, DeliveryOutcome.failed) and self.is_undelivered(routed_at, now):
            return DeliveryOutcome.undelivered
        return outcome


def from_settings(settings: DeliverySettings) -> tuple[Backoff, UndeliveredPolicy]:
    return (Backoff(settings.retry_base_seconds, settings.retry_max_seconds),
            UndeliveredPolicy(timedelta(minutes=settings.undelivered_after_minutes)))
