"""The embedded chDB store: migrations, and replays that double nothing (tables AND views)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sink_helpers import VIEW_TABLES, chdb_store, counts, final_counts, receipts, scenario, today_cell

from veille.reads.indicators import compute
from veille.schemas.models import Record
from veille.sinks.rows import to_rows
from veille.sinks.store import ChdbStore, load_migrations


def insert_all(store: ChdbStore, records: list[Record], token: str) -> None:
    stored_at = datetime.now(UTC)
    for table, rows in to_rows(records, stored_at).items():
        if rows.num_rows:
            store.insert(table, rows, f"{table}|{token}")


def test_migrations_idempotent_and_recorded(tmp_path: Path) -> None:
    with chdb_store(tmp_path / "chdb") as store:  # migrates once
        assert store.migrate() == []
        assert store.migrate() == []
        recorded = store.query("SELECT version, name FROM veille.schema_migrations FINAL ORDER BY version")
        assert [(r["version"], r["name"]) for r in recorded] == \
            [(m.version, m.name) for m in load_migrations()]
        tables = {r["name"] for r in store.query("SHOW TABLES FROM veille")}
        assert {"incidents", "dispatches", "status_events", "alerts", "delivery_receipts",
                *VIEW_TABLES} <= tables
        ttl = store.query("SELECT engine_full FROM system.tables "
                          "WHERE database = 'veille' AND name = 'incidents'")
        assert "TTL toDateTime(reported_at) + toIntervalDay(400)" in ttl[0]["engine_full"]
        assert "non_replicated_deduplication_window = 10000" in ttl[0]["engine_full"]
    # Reopening the same store (a restart) finds everything applied.
    with chdb_store(tmp_path / "chdb") as store:
        assert store.migrate() == []


def test_replayed_batch_doubles_nothing(tmp_path: Path) -> None:
    records = [*scenario(30), *receipts(6)]
    with chdb_store(tmp_path / "chdb") as store:
        insert_all(store, records, "t:0:0-99")
        first_counts = counts(store)
        first = compute(store, today_cell())
        assert first_counts["incidents"] == 30 and first_counts["dispatches"] == 62
        assert first_counts["delivery_receipts"] == 12
        assert first["reports"]["total"] == 30
        # 6 dispatches of sdis35 by webhook: 2 undelivered (the 1st and the 4th), 4 delivered.
        (webhook,) = first["delivery"]["by_agency_method"]
        assert (webhook["dispatches"], webhook["delivered"], webhook["undelivered"]) == (6, 4, 2)

        # The same batch again, same token (crash before the offset commit): skipped everywhere.
        insert_all(store, records, "t:0:0-99")
        assert counts(store) == first_counts
        assert compute(store, today_cell()) == first

        # Re-delivered under another batch boundary (new token): raw parts grow, but the
        # ReplacingMergeTree tables read FINAL and the idempotent views give the same answers.
        insert_all(store, records, "t:0:0-49")
        assert final_counts(store) == {t: first_counts[t] for t in final_counts(store)}
        assert compute(store, today_cell()) == first


def test_later_routing_replaces_the_incident(tmp_path: Path) -> None:
    records = scenario(3)
    inc = records[0]
    with chdb_store(tmp_path / "chdb") as store:
        insert_all(store, records, "a")
        rerouted = inc.model_copy(update={"routed_at": inc.routed_at.replace(microsecond=0) +
                                          (inc.routed_at - inc.reported_at), "severity": "critical"})
        insert_all(store, [rerouted], "b")
        rows = store.query("SELECT severity FROM veille.incidents FINAL WHERE id = {id:UUID}",
                           {"id": str(inc.id)})
        assert rows == [{"severity": "critical"}]
        assert final_counts(store)["incidents"] == 3
