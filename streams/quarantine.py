"""Per-source quarantine: one publisher's garbage must not stop the territory's router.

A *source* is who published a message: the municipality of an intake topic, and on the shared
topics the publisher the message names (the agency of a status update, the sender of an
alert; ``unattributed`` when it cannot even be decoded). Each source has its own window of
recent messages. When most of a source's window is invalid, the source is **quarantined**:
its invalid messages are no longer dead-lettered one by one but as one *range letter* per
partition and batch (``streams/batch.py``), its valid messages keep being routed and its
offsets keep being committed. The quarantine ends by itself once the source sends
``release_valid_run`` valid messages in a row, or sends nothing invalid for
``release_quiet_seconds``.

Stopping the router stays for *systemic* invalidity only: when at least
``systemic_min_sources`` sources are quarantined at once and they are more than
``systemic_ratio`` of the sources active in the last ``active_seconds`` (a wrong catalogue, a
broken deployment: everyone is invalid), ``TooManyInvalid`` is raised before the batch is
delivered, so nothing of it is committed, as before.

Pure: no Kafka, no metrics; ``SourceGuard.judge`` says what changed and the caller counts it.
Sources are bounded (``max_sources``, least recently seen forgotten first) so that a publisher
naming a new sender in every message cannot grow the router's memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from veille.deadletter import TooManyInvalid


@dataclass(frozen=True)
class QuarantinePolicy:
    window: int = 1000  # a source's last messages...
    min_messages: int = 100  # ...judged once it has sent this many
    max_invalid_ratio: float = 0.5  # quarantined above this share of invalid messages
    release_valid_run: int = 50  # released after this many valid messages in a row...
    release_quiet_seconds: float = 60.0  # ...or this long without an invalid one
    active_seconds: float = 300.0  # a source counts as active this long after its last message
    systemic_min_sources: int = 2
    systemic_ratio: float = 0.5  # stop when quarantined sources > this share of active ones
    max_sources: int = 1000


@dataclass
class SourceState:
    recent: deque[bool] = field(default_factory=deque)
    invalid: int = 0
    valid_run: int = 0
    last_seen: float = 0.0
    last_invalid: float = 0.0
    quarantined: bool = False

    def ratio(self) -> float:
        return self.invalid / len(self.recent) if self.recent else 0.0


@dataclass(frozen=True)
class Verdict:
    """What one batch changed: the sources quarantined for it, and who entered or left."""

    quarantined: frozenset[str]
    entered: tuple[str, ...] = ()
    released: tuple[str, ...] = ()


class SourceGuard:
    def __init__(self, policy: QuarantinePolicy | None = None) -> None:
        self.policy = policy or QuarantinePolicy()
        self.sources: OrderedDict[str, SourceState] = OrderedDict()

    def judge(self, sources: Sequence[str], invalid: Sequence[bool], now: float | None = None) -> Verdict:
        """Count one batch (``sources[i]`` published message i, ``invalid[i]`` says whether it
        was dead-lettered); raise ``TooManyInvalid`` when the batch makes the failure systemic.
        The whole batch is counted before anyone is judged, so the order of messages within a
        batch does not decide between a quarantine and a systemic stop."""
        now = time.monotonic() if now is None else now
        p = self.policy
        touched: dict[str, SourceState] = {}
        for source, bad in zip(sources, invalid, strict=True):
            state = touched.get(source) or self._state(source)
            touched[source] = state
            state.recent.append(bad)
            state.invalid += bad
            if len(state.recent) > p.window:
                state.invalid -= state.recent.popleft()
            state.last_seen = now
            if bad:
                state.last_invalid = now
                state.valid_run = 0
            else:
                state.valid_run += 1
        entered: list[str] = []
        released: list[str] = []
        for source, state in self.sources.items():
            if state.quarantined:
                quiet = now - state.last_invalid >= p.release_quiet_seconds
                if quiet or state.valid_run >= p.release_valid_run:
                    released.append(source)
            elif (source in touched and len(state.recent) >= p.min_messages
                  and state.ratio() > p.max_invalid_ratio):
                entered.append(source)
        bad_now = {s for s, st in self.sources.items() if st.quarantined} - set(released) | set(entered)
        active = sum(1 for st in self.sources.values() if now - st.last_seen <= p.active_seconds)
        if len(bad_now) >= p.systemic_min_sources and len(bad_now) > p.systemic_ratio * active:
            raise TooManyInvalid(
                f"{len(bad_now)} of the {active} active sources are mostly invalid "
                f"({', '.join(sorted(bad_now)[:5])}{', ...' if len(bad_now) > 5 else ''}): "
                "a systemic failure, not one publisher")
        for source in released:
            state = self.sources[source]
            # A fresh window: the garbage that caused the quarantine must not re-enter it at once.
            state.quarantined = False
            state.recent.clear()
            state.invalid = 0
        for source in entered:
            self.sources[source].quarantined = True
        return Verdict(frozenset(bad_now), tuple(entered), tuple(released))

    def quarantined(self) -> dict[str, SourceState]:
        return {s: st for s, st in self.sources.items() if st.quarantined}

    def _state(self, source: str) -> SourceState:
        state = self.sources.get(source)
        if state is None:
            state = self.sources[source] = SourceState()
            if len(self.sources) > self.policy.max_sources:
                # Forget the least recently seen source that is not quarantined.
                for old, st in self.sources.items():
                    if not st.quarantined and old != source:
                        del self.sources[old]
                        break
        else:
            self.sources.move_to_end(source)
        return state
