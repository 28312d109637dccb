"""The sink stores the cascade's events (migration 0008): counts only, no register content;
a replayed batch doubles nothing; a bad event is a dead letter, not a crash."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sink_helpers import chdb_store

from veille.kafka import Message
from veille.pcs import events as e
from veille.schemas.models import DeadLetter
from veille.sinks.decode import decode
from veille.sinks.rows import to_rows
from veille.topics import PCS_TYPES

NOW = int(datetime.now(UTC).timestamp() * 1000)
PERSON = "3f1c0a2e-0000-4000-8000-00000000beef"
EVENTS = [
    e.ActivationEvent(activation="a1", at=NOW, municipality="35401", source="alert", source_id="cap-1",
                      severity="Severe", representatives=("r1", "r2")),
    e.NotifiedEvent(activation="a1", at=NOW, notification="n1", municipality="35401", owner="r1",
                    target="r1", step=0, channel="email", outcome="delivered"),
    e.NotifiedEvent(activation="a1", at=NOW, notification="n2", municipality="35401", owner="r2",
                    target="r2", step=0, channel="sms", outcome="failed"),
    e.AckEvent(activation="a1", at=NOW, municipality="35401", owner="r1", by="r1"),
    e.CheckEvent(activation="a1", at=NOW, municipality="35401", owner="r1", person=PERSON,
                 status=e.CheckStatus.needs_help),
]


def _msg(value: bytes) -> Message:
    return Message(topic="v.pcs.cascade", partition=0, offset=1, key=b"a1", value=value)


def test_cascade_events_stored_as_counts(tmp_path: Path) -> None:
    decoded = [decode(_msg(e.encode(ev)), expect=PCS_TYPES) for ev in EVENTS]
    assert not any(isinstance(d, DeadLetter) for d in decoded)
    with chdb_store(tmp_path / "chdb") as store:
        for token in ("t1", "t1", "t2"):  # a replayed block, then the same events again
            rows = to_rows(decoded, datetime.now(UTC))["pcs_cascade"]
            store.insert("pcs_cascade", rows, f"pcs_cascade|{token}")
        got = store.query("SELECT kind, count() AS n, countIf(status = 'besoin_aide') AS help "
                          "FROM veille.pcs_cascade FINAL WHERE municipality = '35401' "
                          "GROUP BY kind ORDER BY kind")
        assert {r["kind"]: int(r["n"]) for r in got} == {"activation": 1, "notified": 2,
                                                          "acknowledged": 1, "check": 1}
        dump = str(store.query("SELECT * FROM veille.pcs_cascade"))
        assert PERSON not in dump  # not even the register entry's opaque id


def test_a_bad_cascade_event_is_a_dead_letter() -> None:
    out = decode(_msg(b'{"type": "check", "activation": "a1"}'), expect=PCS_TYPES)
    assert isinstance(out, DeadLetter) and out.reason == "validation_error"
