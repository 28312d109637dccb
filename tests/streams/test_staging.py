"""Reading and routing a batch ahead (streams/staging.py) changes no outcome: a mixed batch of
good, duplicate, conflicting, spoofed, unroutable, hostile and undecodable messages gets the
outcomes, reasons and bytes it gets message by message without staging."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from veille.config import Settings
from veille.kafka import Message
from veille.producers.simulator import Simulator
from veille.schemas import codec
from veille.schemas.models import GeoPoint, Incident
from veille.streams.batch import process_batch
from veille.streams.dedup import DedupWindow
from veille.streams.router import Outcome, Router
from veille.streams.staging import Staged, decided
from veille.territory import load_territory
from veille.topics import Topics

NOW = datetime.now(UTC)
TOPICS = Topics("t")


def _router() -> Router:
    territory = load_territory(Settings().territory_dir)
    return Router(territory, TOPICS, pseudonym_key=b"k", dispatch_key=b"d", clock=lambda: NOW)


def _batch() -> list[Message]:
    router = _router()
    sim = Simulator(router.territory, seed=11, start=NOW - timedelta(hours=3), dispatch_key=b"d")
    incidents: list[Incident] = sim.incidents(60)
    rng = random.Random(3)
    values: list[tuple[str, bytes | None]] = [(TOPICS.intake(i.municipality), i.encode()) for i in incidents]
    first = incidents[0]
    values += [
        (TOPICS.intake(first.municipality), first.encode()),  # a duplicate within the batch
        (TOPICS.intake(first.municipality), first.model_copy(update={"description": "autre"}).encode()),
        (TOPICS.intake("35402" if first.municipality != "35402" else "35401"), incidents[1].encode()),
        (TOPICS.intake(first.municipality),  # outside the territory
         first.model_copy(update={"id": incidents[2].id.__class__(int=5),
                                  "location": GeoPoint(lat=43.0, lon=5.0)}).encode()),
        (TOPICS.intake(first.municipality), None), (TOPICS.intake(first.municipality), b"\xc3\x01junk"),
        (TOPICS.alerts, incidents[3].encode()), (TOPICS.status, b""),
    ]
    good = incidents[4].encode()
    for _ in range(40):  # corrupted copies: decode errors, validation errors, sometimes fine
        data = bytearray(good)
        data[rng.randrange(codec.HEADER_LEN, len(data))] = rng.randrange(256)
        values.append((TOPICS.intake(incidents[4].municipality), bytes(data)))
    rng.shuffle(values)
    return [Message(topic, 0, n, b"k", value) for n, (topic, value) in enumerate(values)]


def _shape(outcomes: list[Outcome]) -> list[tuple[object, ...]]:
    return [(o.kind, o.reason, o.targets, tuple((x.topic, x.key, x.value) for x in o.outputs))
            for o in outcomes]


def test_staged_batches_get_the_outcomes_of_unstaged_messages() -> None:
    messages = _batch()
    staged: list[Outcome] = []
    seen = DedupWindow().batch()
    process_batch(_router(), messages, seen, staged)
    alone_router = _router()
    window = DedupWindow().batch()
    alone = []
    for i, msg in enumerate(messages):
        window.owner = i
        alone.append(alone_router.process(msg, window))  # never staged: read as it comes
    assert _shape(staged) == _shape(alone)
    kinds = {o.kind for o in staged}
    reasons = {o.reason for o in staged}
    assert {"routed", "duplicate", "dead_letter"} <= kinds
    assert {"conflicting_duplicate", "municipality_mismatch", "unroutable", "empty_message",
            "wrong_record_type"} <= reasons


def test_a_message_not_staged_or_staged_in_an_earlier_batch_is_read_as_it_comes() -> None:
    staged: Staged[str, int] = Staged()
    a, b = Message("t", 0, 1, None, b"a"), Message("t", 0, 2, None, b"b")
    staged.stage([a], lambda m: (m.value or b"").decode(), len)
    assert staged.take(a, lambda m: "fresh") == ("a", 1)
    assert staged.take(a, lambda m: "fresh") == ("fresh", None)  # taken once
    assert staged.take(b, lambda m: "fresh") == ("fresh", None)
    staged.stage([a], lambda m: (m.value or b"").decode(), len)
    staged.stage([b], lambda m: (m.value or b"").decode(), len)  # the next batch forgets a
    assert staged.take(a, lambda m: "fresh") == ("fresh", None)
    assert decided(None, lambda: 7) == 7 and decided(3, lambda: 7) == 3


def test_a_staged_exception_is_raised_at_its_message_s_turn() -> None:
    staged: Staged[str, int] = Staged()
    msg = Message("t", 0, 1, None, b"x")

    def bad_read(_m: Message) -> str:
        raise ValueError("unreadable")

    staged.stage([msg], bad_read, len)
    try:
        staged.take(msg, bad_read)
    except ValueError as exc:
        assert str(exc) == "unreadable"
    else:
        raise AssertionError("the staged exception was not raised")

    def bad_route(_v: str) -> int:
        raise KeyError("route")

    staged.stage([msg], lambda m: "v", bad_route)
    value, decision = staged.take(msg, bad_read)
    assert value == "v" and isinstance(decision, KeyError)
