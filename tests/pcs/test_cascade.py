"""The cascade's pure decisions: one notification per watch and step, deterministic ids,
substitute then cell on silence, acknowledgement stops the chain."""

from __future__ import annotations

from pathlib import Path

from veille.config import Settings
from veille.pcs.cascade import CELL, acknowledge, activation_id, expire, start
from veille.pcs.plan import PCS_FILE, read_plan

PLAN = read_plan(Path(Settings().territory_dir) / PCS_FILE).municipalities["35401"]
MINUTE = 60_000


def test_ids_are_deterministic() -> None:
    a = activation_id("35401", "alert-1")
    assert a == activation_id("35401", "alert-1") != activation_id("35402", "alert-1")
    first = start(PLAN, a, "35401", ("r-35401-centre", "r-35401-gare"), 0)
    again = start(PLAN, a, "35401", ("r-35401-centre", "r-35401-gare", "r-35401-centre"), 0)
    assert [n.id for _, n in first] == [n.id for _, n in again]
    assert len({n.id for _, n in first}) == 2


def test_silence_goes_to_the_substitute_then_the_cell() -> None:
    [(watch, first)] = start(PLAN, "act", "35401", ("r-35401-centre",), 0)
    assert first.target == "r-35401-centre" and watch.deadline_ms == 30 * MINUTE
    same, nothing = expire(PLAN, watch, 30 * MINUTE - 1)
    assert nothing is None and same == watch
    watch, sub = expire(PLAN, watch, 30 * MINUTE)
    assert sub is not None and sub.target == "r-35401-gare" and sub.owner == "r-35401-centre"
    assert sub.contact.email == "gare@montveille.example"
    assert watch.deadline_ms == 60 * MINUTE
    watch, cell = expire(PLAN, watch, 90 * MINUTE)
    assert cell is not None and cell.target == CELL and cell.contact.email == "pcs@montveille.example"
    assert watch.deadline_ms is None  # the end of the chain
    assert expire(PLAN, watch, 10**12) == (watch, None)
    assert len({first.id, sub.id, cell.id}) == 3


def test_acknowledgement_stops_the_chain() -> None:
    [(watch, _)] = start(PLAN, "act", "35401", ("r-35401-centre",), 0)
    assert acknowledge(PLAN, watch, "r-35401-gare") == watch  # not notified yet: ignored
    acked = acknowledge(PLAN, watch, "r-35401-centre")
    assert acked.acknowledged_by == "r-35401-centre" and acked.deadline_ms is None
    assert expire(PLAN, acked, 10**12) == (acked, None)


def test_retry_backoff_doubles_is_capped_and_stops_after_n() -> None:
    from veille.pcs.cascade import next_retry_ms

    def at(done: int) -> int | None:
        return next_retry_ms(done, 1_000, max_retries=4, base_seconds=30, cap_seconds=100)

    assert [at(n) for n in range(5)] == [31_000, 61_000, 101_000, 101_000, None]
    assert next_retry_ms(0, 0, max_retries=0, base_seconds=30, cap_seconds=100) is None
