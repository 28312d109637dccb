"""Backoff per destination (full jitter) and the undelivered policy: pure, the clock passed in."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veille.deliver.retry import Backoff, Destinations, UndeliveredPolicy, from_settings
from veille.deliver.settings import DeliverySettings
from veille.schemas.models import DeliveryOutcome

Out = DeliveryOutcome


def test_the_ceiling_doubles_up_to_the_cap() -> None:
    b = Backoff(1.0, 60.0)
    assert [b.ceiling(n) for n in range(0, 9)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]
    assert b.ceiling(10_000) == 60.0  # no overflow after days of failures


@given(failures=st.integers(min_value=1, max_value=200),
       r=st.floats(min_value=0, max_value=1, exclude_max=True))
def test_full_jitter_stays_between_zero_and_the_ceiling(failures: int, r: float) -> None:
    b = Backoff(0.5, 300.0)
    assert 0 <= b.delay(failures, lambda: r) <= b.ceiling(failures)
    assert 150.0 <= b.refused_delay(lambda: r) <= 300.0


def test_jitter_spreads_retries() -> None:
    rng = random.Random(7)
    delays = [Backoff(1.0, 300.0).delay(6, rng.random) for _ in range(1000)]
    assert min(delays) < 3 and max(delays) > 29 and 13 < sum(delays) / len(delays) < 19  # mean 16


def test_a_failing_destination_waits_and_others_do_not() -> None:
    d = Destinations(Backoff(1.0, 300.0), rand=lambda: 0.999)
    down, up = ("mairie-35401", "webhook", "https://down.example"), ("sdis35", "email", "astreinte@sdis35.fr")
    # Five attempts in a row, each when the previous wait is over: each failure a step further.
    waits, now = [], 100.0
    for _ in range(5):
        waits.append(d.record(down, Out.retry, now=now))
        now += waits[-1]
    assert waits == pytest.approx([0.999, 1.998, 3.996, 7.992, 15.984])
    assert not d.ready(down, 110.0) and d.wait(down, 110.0) == pytest.approx(now - 110.0)
    assert d.ready(up, 110.0) and d.wait(up, 110.0) == 0.0  # never seen: at once
    d.record(up, Out.delivered, now=110.0)
    assert d.ready(up, 110.0)
    assert d.ready(down, now)
    assert d.record(down, Out.delivered, now=now) == 0.0  # back: healthy at once, counter reset
    assert d.state(down).failures == 0 and d.record(down, Out.retry, now=now + 1) == pytest.approx(0.999)


def test_attempts_in_flight_together_fail_as_one_step() -> None:
    """Four workers' attempts to one destination were in flight when it went down: the first
    failure sets the wait, the others, already sent, do not push it further."""
    d = Destinations(Backoff(1.0, 300.0), rand=lambda: 0.999)
    key = ("mairie-35401", "webhook")
    first = d.record(key, Out.retry, now=50.0)
    assert [d.record(key, Out.retry, now=50.1) for _ in range(3)] == pytest.approx([first - 0.1] * 3)
    assert d.state(key).failures == 1
    assert d.record(key, Out.retry, now=50.0 + first) == pytest.approx(1.998)  # the next attempt: step 2


def test_a_refusal_waits_long_and_a_410_disables_until_reconfigured() -> None:
    d = Destinations(Backoff(1.0, 300.0), rand=lambda: 0.0)
    key = "webhook:mairie-35402"
    assert d.record(key, Out.failed, now=0.0) == 150.0
    assert d.record(key, Out.disabled, now=200.0) == math.inf
    assert d.wait(key, 10_000.0) == math.inf and not d.ready(key, 10_000.0)
    d.enable(key)
    assert d.ready(key, 10_000.0)


def test_undelivered_after_the_configured_age_and_still_retried() -> None:
    policy = UndeliveredPolicy(timedelta(minutes=30))
    routed = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    early, late = routed + timedelta(minutes=29), routed + timedelta(minutes=30)
    assert not policy.is_undelivered(routed, early) and policy.is_undelivered(routed, late)
    assert policy.receipt_outcome(Out.retry, routed, early) is Out.retry
    assert policy.receipt_outcome(Out.retry, routed, late) is Out.undelivered
    assert policy.receipt_outcome(Out.failed, routed, late) is Out.undelivered
    assert policy.receipt_outcome(Out.delivered, routed, late) is Out.delivered
    assert policy.receipt_outcome(Out.disabled, routed, late) is Out.disabled
    d = Destinations(Backoff(1.0, 10.0), rand=lambda: 0.5)
    assert d.record("k", Out.undelivered, now=0.0) == 0.5  # an undelivered dispatch keeps its backoff


def test_settings_make_the_policy() -> None:
    backoff, policy = from_settings(DeliverySettings(retry_base_seconds=2, retry_max_seconds=120,
                                                     undelivered_after_minutes=45))
    assert backoff == Backoff(2.0, 120.0) and policy.after == timedelta(minutes=45)
    with pytest.raises(ValueError):
        Backoff(10.0, 1.0)
