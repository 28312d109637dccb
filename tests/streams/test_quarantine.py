"""Per-source quarantine, without a broker: the pure guard, and a batch of the real router.

One source mostly invalid is quarantined (its garbage in range letters, its valid messages
routed); most sources invalid at once still stops the router. The broker-level scenarios
(a flooding municipality, a forging agency, a supervisor): tests/hub/test_flooding_publisher.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from veille.deadletter import TooManyInvalid
from veille.kafka import Message
from veille.producers.simulator import Simulator
from veille.schemas.models import DeadLetter, IncidentStatus, StatusUpdate
from veille.streams.attempts import AttemptLog
from veille.streams.batch import BatchHandler
from veille.streams.dedup import DedupWindow
from veille.streams.quarantine import QuarantinePolicy, SourceGuard
from veille.streams.router import OutcomeKind, Router
from veille.territory import load_territory
from veille.topics import Topics

NOW = datetime.now(UTC)


def _judge(guard: SourceGuard, batch: list[tuple[str, bool]], now: float) -> Any:
    return guard.judge([s for s, _ in batch], [bad for _, bad in batch], now)


def _mixed(n: int, garbage: list[str], healthy: list[str]) -> list[tuple[str, bool]]:
    """n messages of each garbage source (all invalid) and of each healthy one (all valid)."""
    return [(s, True) for s in garbage for _ in range(n)] + [(s, False) for s in healthy for _ in range(n)]


def test_one_flooding_source_is_quarantined_and_the_router_goes_on() -> None:
    guard = SourceGuard()
    healthy = ["municipality:35401", "municipality:35403", "agency:sdis35"]
    verdict = _judge(guard, _mixed(99, ["municipality:35402"], healthy), now=0)
    assert verdict.quarantined == frozenset()  # not judged before min_messages
    verdict = _judge(guard, _mixed(1, ["municipality:35402"], healthy), now=1)
    assert verdict.entered == ("municipality:35402",)
    assert verdict.quarantined == {"municipality:35402"}
    # Still quarantined while the garbage goes on; nobody else is.
    verdict = _judge(guard, _mixed(500, ["municipality:35402"], healthy), now=2)
    assert verdict.quarantined == {"municipality:35402"} and verdict.entered == ()


def test_a_lone_flooding_source_is_quarantined_not_systemic() -> None:
    # Nobody else speaks: one publisher's garbage is still one publisher's (documented).
    verdict = _judge(SourceGuard(), _mixed(600, ["municipality:35402"], []), now=0)
    assert verdict.quarantined == {"municipality:35402"}


def test_garbage_over_three_municipalities_of_six_is_not_systemic() -> None:
    garbage = [f"municipality:3540{i}" for i in (1, 2, 3)]
    healthy = [f"municipality:3540{i}" for i in (4, 5, 6)]
    verdict = _judge(SourceGuard(), _mixed(200, garbage, healthy), now=0)
    assert verdict.quarantined == set(garbage)


def test_most_sources_invalid_at_once_stops() -> None:
    garbage = [f"municipality:3540{i}" for i in (1, 2, 3)]
    with pytest.raises(TooManyInvalid, match="3 of the 4 active sources"):
        _judge(SourceGuard(), _mixed(200, garbage, ["agency:sdis35"]), now=0)
    # Order within a batch does not matter: the whole batch is counted before judging.
    guard = SourceGuard()
    with pytest.raises(TooManyInvalid):
        _judge(guard, list(reversed(_mixed(200, garbage[:2], []))), now=0)


def test_quarantine_ends_after_a_valid_run_or_a_quiet_spell() -> None:
    policy = QuarantinePolicy(release_valid_run=20, release_quiet_seconds=60)
    guard = SourceGuard(policy)
    other = [("agency:sdis35", False)] * 10
    assert _judge(guard, _mixed(200, ["municipality:35402"], []) + other, now=0).entered
    verdict = _judge(guard, [("municipality:35402", False)] * 19 + other, now=1)
    assert verdict.quarantined == {"municipality:35402"}  # 19 valid in a row: not yet
    verdict = _judge(guard, [("municipality:35402", False), *other], now=2)
    assert verdict.released == ("municipality:35402",) and not verdict.quarantined
    # Released with a fresh window: a few invalid messages are dead-lettered one by one again.
    assert not _judge(guard, [("municipality:35402", True)] * 50 + other, now=3).quarantined
    # A quiet spell releases it too, even when the source sends nothing more.
    guard = SourceGuard(policy)
    _judge(guard, _mixed(200, ["municipality:35402"], []) + other, now=0)
    assert _judge(guard, other, now=59).quarantined
    assert _judge(guard, other, now=60).released == ("municipality:35402",)


def test_sources_are_bounded() -> None:
    guard = SourceGuard(QuarantinePolicy(max_sources=10))
    _judge(guard, _mixed(200, ["sender:flood"], []), now=0)
    _judge(guard, [(f"sender:{i}", True) for i in range(100)] + [("ok", False)] * 300, now=1)
    assert len(guard.sources) == 10 and "sender:flood" in guard.sources  # the quarantined one kept


# --------------------------------------------------------------------------- the router's batch


@pytest.fixture()
def handler(tmp_path: Path) -> BatchHandler:
    router = Router(load_territory(), Topics("q"), pseudonym_key=b"k", dispatch_key=b"d")
    sender: Any = None  # prepare() decides only; delivery is tested on the broker
    return BatchHandler(router, sender, DedupWindow(), AttemptLog(tmp_path / "attempts.json"))


def test_a_quarantined_municipalitys_garbage_becomes_range_letters_and_its_reports_are_routed(
        handler: BatchHandler) -> None:
    topics = handler.topics
    sim = Simulator(load_territory(), seed=5, start=NOW - timedelta(hours=1))
    offsets: dict[tuple[str, int], int] = {}

    def message(topic: str, partition: int, value: bytes) -> Message:
        offset = offsets[(topic, partition)] = offsets.get((topic, partition), -1) + 1
        return Message(topic, partition, offset, b"k", value)

    flood, batches = topics.intake("35402"), []
    for _ in range(3):
        batch = [message(flood, p % 2, os.urandom(40)) for p in range(300)]
        batch += [message(topics.intake(i.municipality), 0, i.encode()) for i in
                  (sim.incident(municipality=m, at=NOW - timedelta(minutes=5)) for m in ("35401", "35403"))]
        own = sim.incident(municipality="35402", at=NOW - timedelta(minutes=5))
        batch.append(message(flood, 0, own.encode()))
        batches.append(batch)
    prepared = [asyncio.run(handler.prepare(b)) for b in batches]

    # Before quarantine (the first batch: 300 messages, judged as a whole) the source is quarantined
    # at the end of the batch already, so every batch's garbage is in ranges.
    letters: list[DeadLetter] = []
    for p in prepared:
        kinds = [o.kind for o in p.outcomes]
        assert kinds.count(OutcomeKind.routed) == 3  # the others' reports and 35402's own valid one
        assert kinds.count(OutcomeKind.dead_letter) == 300
        for outcome in p.outcomes:
            for out in outcome.outputs:
                if out.topic == topics.dead_letter_restricted:
                    letters.append(DeadLetter.decode(out.value))
    assert len(letters) == 3 * 2  # one per batch and partition
    by_value = {(m.partition, m.offset): m.value for b in batches for m in b if m.topic == flood}
    for letter in letters:
        assert letter.reason == "quarantined_source" and letter.source == "municipality:35402"
        assert letter.range_count == len(letter.range_offsets) == 150
        assert letter.range_offsets[0] == letter.source_offset
        assert letter.range_offsets[-1] == letter.range_last_offset
        values = [by_value[(letter.source_partition, o)] for o in letter.range_offsets]
        digest = hashlib.sha256(b"".join(hashlib.sha256(v).digest() for v in values)).hexdigest()
        assert letter.range_sha256 == digest
        assert letter.original_value == values[0] and letter.samples == values[1:4]
    # Conservation: every garbage message is counted by exactly one letter.
    assert sum(letter.range_count for letter in letters) == 900
    assert sum(len(set(letter.range_offsets)) for letter in letters) == 900


def test_a_forging_agency_is_quarantined_by_the_name_it_gives(handler: BatchHandler) -> None:
    topics = handler.topics

    def forged(i: int) -> Message:
        update = StatusUpdate(id=uuid.uuid4(), incident_id=uuid.uuid4(), agency_id="sdis35",
                              dispatch_id=uuid.uuid4(), status=IncidentStatus.acknowledged, at=NOW)
        return Message(topics.status, 0, i, None, update.encode())

    batch = [forged(i) for i in range(200)] + [Message(topics.status, 0, 200 + i, None, b"\x00junk")
                                               for i in range(5)]
    prepared = asyncio.run(handler.prepare(batch))
    assert handler.guard.quarantined().keys() == {"agency:sdis35"}
    assert {o.source for o in prepared.outcomes[:200]} == {"agency:sdis35"}
    assert all(o.ranged for o in prepared.outcomes[:200])
    # Undecodable bytes name nobody: their own source, not quarantined with 5 messages.
    assert {o.source for o in prepared.outcomes[200:]} == {"unattributed"}
    assert not any(o.ranged for o in prepared.outcomes[200:])
    (letter,) = [DeadLetter.decode(out.value) for o in prepared.outcomes for out in o.outputs
                 if out.topic == topics.dead_letter and DeadLetter.decode(out.value).range_count > 1]
    assert letter.range_count == 200 and letter.source == "agency:sdis35"
    assert "not_dispatched: 200" in letter.message


def test_systemic_invalidity_raises_before_delivery(handler: BatchHandler) -> None:
    topics = handler.topics
    batch = [Message(topics.intake(m), 0, i, None, b"garbage")
             for m in ("35401", "35402") for i in range(150)]
    with pytest.raises(TooManyInvalid):
        asyncio.run(handler.prepare(batch))
