"""Cases in the store (migration 0008): every report kept with its case, the cases view, splits,
RoutedIncident v1 and v2 both read by the sink's decode; on a real chDB store and known data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from case_helpers import Cases, v1_bytes
from sink_helpers import chdb_store, now_ms

from veille.kafka import Message
from veille.reads.indicators import totals
from veille.schemas.models import CaseSplit, DeadLetter, Record
from veille.sinks.decode import decode
from veille.sinks.rows import to_rows
from veille.sinks.store import ChdbStore


def store_all(store: ChdbStore, records: list[Record | dict], token: str) -> None:
    for table, rows in to_rows(records, datetime.now(UTC)).items():  # type: ignore[arg-type]
        if rows.num_rows:
            store.insert(table, rows, f"{table}|{token}")


def decoded(cases: Cases) -> list:
    """Every record through the sink's decode, as read from <prefix>.routed (u2 as v1 bytes)."""
    out = []
    for n, rec in enumerate(cases.records()):
        value = v1_bytes(rec) if rec.id == cases.u2 else rec.encode()  # type: ignore[attr-defined]
        item = decode(Message("t.routed", 0, n, b"k", value))
        assert not isinstance(item, DeadLetter), item
        out.append(item)
    return out


def test_v1_and_v2_both_stored_with_their_case(tmp_path: Path) -> None:
    cases = Cases(now_ms() - timedelta(hours=3))
    items = decoded(cases)
    assert any(isinstance(i, CaseSplit) for i in items)
    with chdb_store(tmp_path / "chdb") as store:
        store_all(store, items, "a")
        rows = {r["id"]: r for r in store.query(
            "SELECT toString(id) AS id, toString(case_id) AS case_id, update_agencies, agencies "
            "FROM veille.incidents FINAL")}
        assert len(rows) == 9  # every report, grouped or not, v1 or v2
        assert rows[str(cases.a3)]["case_id"] == str(cases.a1)
        assert rows[str(cases.a3)]["update_agencies"] == ["pm-35401", "siba"]
        assert rows[str(cases.a3)]["agencies"] == []  # an update is not a dispatch
        a2 = rows[str(cases.a2)]
        assert a2["agencies"] == ["pm-35402"] and a2["update_agencies"] == ["siba"]
        assert rows[str(cases.u2)]["case_id"] is None and rows[str(cases.u2)]["update_agencies"] == []
        assert rows[str(cases.u1)]["case_id"] is None
        # Participation by channel still counts every report.
        total = store.query("SELECT toUInt64(uniqExactMerge(reports)) AS n FROM veille.reports_daily")
        assert total == [{"n": 9}]
        # Dispatches counted per body: only real dispatches (a1: 2, a2: 1, b1: 1, c1: 1, u1: 1, u2: 1).
        assert store.query("SELECT count() AS n FROM veille.dispatches FINAL") == [{"n": 7}]
        splits = store.query("SELECT toString(incident_id) AS i, toString(case_id) AS c, agency_id "
                             "FROM veille.case_splits FINAL")
        assert splits == [{"i": str(cases.a4), "c": str(cases.a1), "agency_id": "siba"}]


def test_cases_view(tmp_path: Path) -> None:
    cases = Cases(now_ms() - timedelta(hours=3))
    with chdb_store(tmp_path / "chdb") as store:
        store_all(store, cases.records(), "a")
        store_all(store, cases.records(), "b")  # replayed under another batch boundary: nothing doubles
        got = {r["case_id"]: r for r in store.query(
            "SELECT toString(case_id) AS case_id, category, reports, municipalities, severity, split, "
            "round(min_lat, 4) AS min_lat, round(max_lat, 4) AS max_lat, "
            "toUnixTimestamp64Milli(first_report_at) AS first_ms, "
            "toUnixTimestamp64Milli(first_acknowledged_at) AS ack_ms FROM veille.cases")}
        a, b, c, a4 = (str(x) for x in (cases.a1, cases.b1, cases.c1, cases.a4))
        assert set(got) == {a, b, c, a4}  # u1, u2 never grouped: not cases; a4 split: its own
        base = int(cases.base.timestamp() * 1000)
        assert got[a] | {} == {
            "case_id": a, "category": "flash_flood", "reports": 3, "municipalities": ["35401", "35402"],
            "severity": "severe", "split": False, "min_lat": 48.1, "max_lat": 48.101,
            "first_ms": base, "ack_ms": base + 8 * 60_000}
        assert (got[b]["reports"], got[b]["severity"]) == (2, "moderate")
        assert got[b]["ack_ms"] == base + 90 * 60_000
        assert (got[c]["reports"], got[c]["ack_ms"]) == (1, None)
        assert (got[a4]["reports"], got[a4]["split"], got[a4]["category"]) == (1, True, "flash_flood")
        # /stats: 7 grouped reports under 3 case ids (a4 keeps A's: it was split after), 1 split,
        # 6 updates received (a2: 1, a3: 2, a4: 2, b2: 1).
        stats = totals(store)
        assert (stats["grouped_reports"], stats["case_ids"], stats["split_reports"]) == (7, 3, 1)
        assert stats["case_updates"] == 6
        # Every grouped report is in exactly one case.
        assert sum(r["reports"] for r in got.values()) == 7
        per_report = store.query("SELECT toString(id) AS id, toString(case_of) AS case_of "
                                 "FROM veille.case_reports WHERE grouped ORDER BY id")
        assert len(per_report) == 7 and len({r["id"] for r in per_report}) == 7


def test_a_case_id_that_is_not_a_uuid_is_a_dead_letter() -> None:
    """Bad input never stops the sink: a RoutedIncident v2 whose case_id does not read as a UUID
    (a foreign writer) is dead-lettered with its reason; a non-canonical one is normalised."""
    from veille.schemas import codec

    cases = Cases(now_ms() - timedelta(hours=3))
    (a2,) = [r for r in cases.routed() if r.id == cases.a2]
    value = a2.to_avro() | {"case_id": "not-a-uuid"}
    item = decode(Message("t.routed", 0, 7, b"k", codec.encode("RoutedIncident", value)))
    assert isinstance(item, DeadLetter) and item.reason == "validation_error"
    assert "case_id" in item.message
    upper = a2.to_avro() | {"case_id": str(cases.a1).upper()}
    item = decode(Message("t.routed", 0, 8, b"k", codec.encode("RoutedIncident", upper)))
    assert isinstance(item, dict) and item["case_id"] == str(cases.a1)
