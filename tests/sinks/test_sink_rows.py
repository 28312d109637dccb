"""Pure steps of the sink: decode → rows, batching, dedup tokens, retry, server settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from sink_helpers import delivery_receipt, routed_alert, routed_incident, status_update

from veille.kafka import Message
from veille.schemas import codec
from veille.schemas.models import DeadLetter, RoutedIncident, StatusUpdate
from veille.sinks.batching import Batch, Batcher
from veille.sinks.decode import decode
from veille.sinks.rows import SCHEMAS, TABLES, plain_incident, to_rows, version_of
from veille.sinks.steps import RetryPolicy
from veille.sinks.store import ClickHouseStore, insert_settings, load_migrations
from veille.topics import DELIVERY_TYPES


def msg(value: bytes | None, offset: int = 0, partition: int = 0, key: bytes | None = b"k") -> Message:
    return Message("t.routed", partition, offset, key, value)


def test_to_rows_incident_alert_status() -> None:
    inc = routed_incident(0)
    upd = status_update(inc, "acknowledged", 3)
    alert = routed_alert(1, ["35402", "35401", "35401"])
    stored = inc.routed_at + timedelta(seconds=2)
    tables = to_rows([inc, upd, alert], stored)

    assert set(tables) == set(TABLES)
    for name, table in tables.items():
        assert table.schema == SCHEMAS[name]
    incidents = tables["incidents"].to_pylist()
    assert incidents == [{
        "id": str(inc.id), "municipality": "35401", "category": "flood", "severity": "severe",
        "channel": "app", "lat": 48.1, "lon": -1.7, "occurred_at": inc.occurred_at,
        "reported_at": inc.reported_at, "routed_at": inc.routed_at, "stored_at": stored,
        "reporter_pseudonym": "ps-0", "agencies": ["pm-35401", "sdis35"], "cross_boundary": True,
        "version": version_of(inc.routed_at), "case_id": None, "update_agencies": [],  # not grouped
    }]
    dispatches = tables["dispatches"].to_pylist()
    got = [(d["event_type"], d["agency_id"], d["cross_boundary"], d["municipality"]) for d in dispatches]
    assert got == [
        ("incident", "pm-35401", False, "35401"), ("incident", "sdis35", True, "35401"),
        ("alert", "sdis35", False, ""),
    ]
    assert dispatches[2]["event_id"] == f"{alert.sender}/{alert.identifier}"
    assert dispatches[2]["municipalities"] == ["35401", "35402"]
    assert tables["status_events"].to_pylist() == [{
        "id": str(upd.id), "incident_id": str(inc.id), "agency_id": "sdis35", "status": "acknowledged",
        "at": upd.at, "stored_at": stored, "reason": None,  # a refusal's code only (migration 0005)
    }]
    assert tables["alerts"].column("municipalities").to_pylist() == [["35401", "35402"]]


def test_to_rows_keeps_no_personal_text() -> None:
    inc = routed_incident(1, location=None)
    upd = StatusUpdate(id=inc.id, incident_id=inc.id, agency_id="a", status="resolved", at=inc.reported_at,
                       note="Mme Dupont, 06 12 34 56 78")
    tables = to_rows([inc, upd], inc.routed_at)
    assert "note" not in tables["status_events"].column_names
    assert tables["incidents"].column("lat").to_pylist() == [None]
    text = str({n: t.to_pylist() for n, t in tables.items()})
    assert "Dupont" not in text


def test_to_rows_empty_and_wrong_type() -> None:
    assert all(t.num_rows == 0 for t in to_rows([], routed_incident(0).routed_at).values())
    letter = DeadLetter(reason="x", message="m", component="c", source_topic="t", source_partition=0,
                        source_offset=1, failed_at=routed_incident(0).routed_at)
    with pytest.raises(TypeError):
        to_rows([letter], letter.failed_at)


def test_decode_routed_records_and_dead_letters() -> None:
    inc = routed_incident(2)
    # Routed incidents come as plain values (no model per row), equal to the model's own.
    assert decode(msg(inc.encode())) == plain_incident(inc)
    assert to_rows([decode(msg(inc.encode()))], inc.routed_at)["incidents"].equals(
        to_rows([inc], inc.routed_at)["incidents"])
    upd = status_update(inc, "on_site", 1)
    assert decode(msg(upd.encode())) == upd

    garbage = decode(msg(b"\x00\x01garbage", offset=7, partition=2))
    assert isinstance(garbage, DeadLetter)
    assert (garbage.reason, garbage.component, garbage.source_offset, garbage.source_partition) == \
        ("unsupported_framing", "sink", 7, 2)
    assert garbage.original_value == b"\x00\x01garbage" and garbage.original_key == b"k"

    source_incident = codec.encode("Incident", {
        "id": str(inc.id), "municipality": "35401", "category": "flood", "severity": "severe",
        "occurred_at": inc.occurred_at, "reported_at": inc.reported_at, "channel": "app"})
    wrong = decode(msg(source_incident))
    assert isinstance(wrong, DeadLetter) and wrong.reason == "wrong_record_type"
    empty = decode(msg(None))
    assert isinstance(empty, DeadLetter) and empty.reason == "empty_message"

    # A time the store cannot hold would block its batch forever: dead-lettered instead.
    far_future = inc.to_avro() | {"routed_at": datetime(2999, 1, 1, tzinfo=UTC)}
    far = decode(msg(codec.encode("RoutedIncident", far_future)))
    assert isinstance(far, DeadLetter) and far.reason == "out_of_range" and "routed_at" in far.message

    # Valid Avro, invalid event: a latitude out of range, NaN, an id that is not a UUID.
    for location in ({"lat": 123.0, "lon": 0.0}, {"lat": float("nan"), "lon": 0.0}):
        bad = inc.to_avro() | {"location": location}
        invalid = decode(msg(codec.encode("RoutedIncident", bad)))
        assert isinstance(invalid, DeadLetter) and invalid.reason == "validation_error"
    # fastavro checks a uuid string only when it reads with logical types; the plain path checks it.
    upper = decode(msg(codec.encode("RoutedIncident", inc.to_avro() | {"id": str(inc.id).upper()})))
    assert isinstance(upper, dict) and upper["id"] == str(inc.id)


def test_delivery_receipts_become_rows_and_only_on_the_delivery_topic() -> None:
    receipt = delivery_receipt(method="email", attempt=3, outcome="retry", status_code=451,
                               reply="451 4.7.1 greylisted", latency_ms=830)
    rows = to_rows([receipt, routed_incident(0)], receipt.at)
    assert rows["delivery_receipts"].schema == SCHEMAS["delivery_receipts"]
    assert rows["delivery_receipts"].to_pylist() == [{
        "dispatch_id": str(receipt.dispatch_id), "agency_id": "sdis35", "method": "email", "attempt": 3,
        "outcome": "retry", "status_code": 451, "reply": "451 4.7.1 greylisted", "latency_ms": 830,
        "at": receipt.at, "stored_at": receipt.at}]
    assert rows["incidents"].num_rows == 1
    assert to_rows([delivery_receipt(status_code=None)], receipt.at)["delivery_receipts"] \
        .column("status_code").to_pylist() == [None]

    on_delivery = Message("t.delivery", 0, 4, b"k", receipt.encode())
    assert decode(on_delivery, expect=DELIVERY_TYPES) == receipt
    # Each topic carries its own records: a receipt on the routed topic, an incident on the
    # delivery topic are refused, as any record published to the wrong topic.
    wrong = decode(msg(receipt.encode()))
    assert isinstance(wrong, DeadLetter) and wrong.reason == "wrong_record_type"
    inc = routed_incident(1)
    misplaced = decode(Message("t.delivery", 0, 5, b"k", inc.encode()), expect=DELIVERY_TYPES)
    assert isinstance(misplaced, DeadLetter) and misplaced.reason == "wrong_record_type"
    far = receipt.to_avro() | {"at": datetime(2999, 1, 1, tzinfo=UTC)}
    far_msg = Message("t.delivery", 0, 6, b"k", codec.encode("DeliveryReceipt", far))
    out = decode(far_msg, expect=DELIVERY_TYPES)
    assert isinstance(out, DeadLetter) and out.reason == "out_of_range"


def test_batch_ranges_tokens_and_commit_offsets() -> None:
    batch = Batch(started=0.0)
    inc = routed_incident(0)
    for partition, offset in [(1, 10), (0, 5), (1, 11), (0, 6), (1, 12)]:
        batch.add(msg(b"", offset, partition), inc)
    assert batch.dedup_token("incidents") == "incidents|t.routed:0:5-6,t.routed:1:10-12"
    assert [(tp.partition, tp.offset) for tp in batch.commit_offsets()] == [(0, 7), (1, 13)]
    assert batch.messages == 5


def test_batcher_bounded_by_rows_and_time() -> None:
    now = [100.0]
    batcher = Batcher(max_rows=3, max_seconds=2.0, clock=lambda: now[0])
    inc = routed_incident(0)
    assert not batcher.ready() and batcher.empty
    batcher.add(msg(b"", 0), inc)
    batcher.add(msg(b"", 1), inc)
    assert not batcher.ready()
    batcher.add(msg(b"", 2), inc)
    assert batcher.ready()
    full = batcher.take()
    assert full is not None and full.messages == 3 and batcher.empty

    batcher.add(msg(b"", 3), inc)
    now[0] += 1.5
    assert not batcher.ready() and batcher.remaining_seconds() == pytest.approx(0.5)
    now[0] += 0.5
    assert batcher.ready()


def test_retry_backoff_is_exponential_and_capped() -> None:
    policy = RetryPolicy(initial=0.5, multiplier=2, maximum=5)
    assert [policy.delay(a) for a in range(1, 7)] == [0.5, 1, 2, 4, 5, 5]


class RecordingClient:
    """Stands in for clickhouse-connect's client: records what would go to the server."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def insert_arrow(self, table: str, arrow_table: pa.Table, database: str | None = None,
                     settings: dict[str, Any] | None = None) -> None:
        self.calls.append(("insert_arrow", (table, arrow_table.num_rows, database, settings)))

    def command(self, sql: str) -> None:
        self.calls.append(("command", sql))

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        self.calls.append(("query", (sql, parameters)))
        return type("R", (), {"named_results": lambda self: iter([])})()

    def close(self) -> None:
        pass


def test_clickhouse_store_sends_dedup_settings_and_same_sql() -> None:
    client = RecordingClient()
    store = ClickHouseStore("http://ch:8123", "veille", client=client)
    tables = to_rows([routed_incident(0)], routed_incident(0).routed_at)
    store.insert("incidents", tables["incidents"], "incidents|t:0:1-2")
    assert client.calls[-1] == ("insert_arrow", ("incidents", 1, "veille", {
        "insert_deduplicate": 1, "insert_deduplication_token": "incidents|t:0:1-2",
        "deduplicate_blocks_in_dependent_materialized_views": 1}))
    assert insert_settings("x")["insert_deduplication_token"] == "x"

    applied = store.migrate()
    assert applied == [f"{m.version:04d}_{m.name}" for m in load_migrations()]
    commands = [sql for kind, sql in client.calls if kind == "command"]
    assert commands[0] == "CREATE DATABASE IF NOT EXISTS veille"
    assert any("CREATE TABLE IF NOT EXISTS veille.incidents" in c for c in commands)
    assert any("INTERVAL 400 DAY" in c for c in commands)
    with pytest.raises(ValueError):
        store.insert("incidents; DROP TABLE x", tables["incidents"], "t")


def test_migrations_are_versioned_and_idempotent_statements() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    for m in migrations:
        for stmt in m.statements(db="veille", incident_ttl_days=400, aggregate_ttl_days=3650):
            assert "IF NOT EXISTS" in stmt, stmt[:80]


def test_routed_incident_version_is_routing_time() -> None:
    inc = routed_incident(0)
    later = inc.model_copy(update={"routed_at": inc.routed_at + timedelta(seconds=1)})
    assert isinstance(later, RoutedIncident)
    assert version_of(later.routed_at) - version_of(inc.routed_at) == 1000
