"""The analytical store behind the sink: embedded chDB by default, a ClickHouse server if configured.

Both backends take the same SQL and the same batch format (pyarrow Tables), so the sink
and the indicators never know which one they talk to. Replays are made harmless here:
every insert carries an ``insert_deduplication_token`` and asks dependent materialized
views to skip duplicate blocks too.

An on-disk chDB store can be opened by ONE process at a time (and chDB allows one path
per process): the sink owns it and serves queries over HTTP (see ``veille.reads.service``).
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Protocol

import pyarrow as pa

from veille.config import Settings

log = logging.getLogger(__name__)

# Personal-data minimisation: event-level rows expire, aggregates are kept longer.
# (Defaults of the store classes; open_store takes them from the settings.)
INCIDENT_TTL_DAYS = 400
AGGREGATE_TTL_DAYS = 3650

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def insert_settings(dedup_token: str) -> dict[str, Any]:
    """Per-insert settings that make a replayed block a no-op, in tables and in their views."""
    return {
        "insert_deduplicate": 1,
        "insert_deduplication_token": dedup_token,
        "deduplicate_blocks_in_dependent_materialized_views": 1,
    }


class Store(Protocol):
    database: str

    def migrate(self) -> list[str]: ...

    def insert(self, table: str, batch: pa.Table, dedup_token: str) -> None: ...

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...

    def command(self, sql: str) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self, **values: Any) -> list[str]:
        text = Template(self.sql).substitute(values)
        body = "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
        return [s.strip() for s in body.split(";") if s.strip()]


def load_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("veille.sinks").joinpath("migrations").iterdir():
        m = _MIGRATION_FILE.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return found


def run_migrations(store: Store, incident_ttl_days: int = INCIDENT_TTL_DAYS,
                   aggregate_ttl_days: int = AGGREGATE_TTL_DAYS) -> list[str]:
    """Apply the migrations not yet recorded; safe at every start (each statement is IF NOT EXISTS)."""
    db = store.database
    store.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    store.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, name String, "
        "applied_at DateTime64(3, 'UTC')) ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {int(r["version"]) for r in store.query(f"SELECT version FROM {db}.schema_migrations FINAL")}
    applied = []
    for mig in load_migrations():
        if mig.version in done:
            continue
        # A crash between statements leaves the migration unrecorded: it is simply re-run.
        for stmt in mig.statements(db=db, incident_ttl_days=incident_ttl_days,
                                   aggregate_ttl_days=aggregate_ttl_days):
            store.command(stmt)
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        store.command(f"INSERT INTO {db}.schema_migrations VALUES "
                      f"({mig.version}, {sql_string(mig.name)}, '{stamp}')")
        applied.append(f"{mig.version:04d}_{mig.name}")
        log.info("applied migration %04d_%s", mig.version, mig.name)
    return applied


def sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _chdb_param(value: Any) -> str:
    """chDB binds {name:Type} parameters from their text form: render Python values as such."""
    if isinstance(value, list | tuple | set):
        items = sorted(value) if isinstance(value, set) else value
        return "[" + ",".join(sql_string(str(v)) if isinstance(v, str) else _chdb_param(v)
                              for v in items) + "]"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _check_ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


class ChdbStore:
    """Embedded chDB on disk. One lock: the sink's pipeline and HTTP threads share the session."""

    def __init__(self, path: Path, database: str = "veille", *,
                 incident_ttl_days: int = INCIDENT_TTL_DAYS,
                 aggregate_ttl_days: int = AGGREGATE_TTL_DAYS) -> None:
        import chdb

        self.database = _check_ident(database)
        self.ttl_days = (incident_ttl_days, aggregate_ttl_days)
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = chdb.connect(str(self.path))

    def migrate(self) -> list[str]:
        return run_migrations(self, *self.ttl_days)

    def insert(self, table: str, batch: pa.Table, dedup_token: str) -> None:
        cols = ", ".join(_check_ident(c) for c in batch.column_names)
        opts = ", ".join(f"{k} = {sql_string(v) if isinstance(v, str) else v}"
                         for k, v in insert_settings(dedup_token).items())
        # Python(batch) reads the Arrow table straight from this frame, without a copy.
        sql = (f"INSERT INTO {self.database}.{_check_ident(table)} ({cols}) "
               f"SELECT {cols} FROM Python(batch) SETTINGS {opts}")
        with self._lock:
            self._conn.query(sql)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return list(self.query_arrow(sql, params).to_pylist())

    def query_arrow(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        bound = {k: _chdb_param(v) for k, v in (params or {}).items()}
        with self._lock:
            result = self._conn.query(sql, "ArrowTable", params=bound) if bound \
                else self._conn.query(sql, "ArrowTable")
        table: pa.Table = result
        return table

    def command(self, sql: str) -> None:
        with self._lock:
            self._conn.query(sql)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class ClickHouseStore:
    """A ClickHouse server through clickhouse-connect (HTTP). Same SQL, same Arrow batches.

    Not exercised against a server in this repository's tests (none runs here); the
    settings it sends are unit-tested. On a replicated cluster, use Replicated* engines
    and drop ``non_replicated_deduplication_window`` (replicated tables dedup by default).
    """

    def __init__(self, url: str, database: str = "veille", client: Any = None, *,
                 incident_ttl_days: int = INCIDENT_TTL_DAYS,
                 aggregate_ttl_days: int = AGGREGATE_TTL_DAYS) -> None:
        self.database = _check_ident(database)
        self.ttl_days = (incident_ttl_days, aggregate_ttl_days)
        if client is None:
            import clickhouse_connect

            # The database may not exist yet (first migrate), so connect to "default".
            client = clickhouse_connect.get_client(dsn=url, database="default")
        self._client = client

    def migrate(self) -> list[str]:
        return run_migrations(self, *self.ttl_days)

    def insert(self, table: str, batch: pa.Table, dedup_token: str) -> None:
        self._client.insert_arrow(_check_ident(table), batch, database=self.database,
                                  settings=insert_settings(dedup_token))

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = list(self._client.query(sql, parameters=params or {}).named_results())
        return rows

    def command(self, sql: str) -> None:
        self._client.command(sql)

    def close(self) -> None:
        self._client.close()


def open_store(settings: Settings) -> Store:
    """The configured store: a ClickHouse server if ``clickhouse_url`` is set, else chDB on disk."""
    ttl = {"incident_ttl_days": settings.store_incident_ttl_days,
           "aggregate_ttl_days": settings.store_aggregate_ttl_days}
    if settings.clickhouse_url:
        return ClickHouseStore(settings.clickhouse_url, settings.clickhouse_database, **ttl)
    return ChdbStore(settings.chdb_path, settings.clickhouse_database, **ttl)
