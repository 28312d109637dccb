"""Records → per-table pyarrow Tables: the pure heart of the sink (no Kafka, no store).

One Arrow schema per table, matching ``migrations/0001_event_tables.sql`` (and the columns
later migrations add) column for column.
Nothing personal is carried over: RoutedIncident has only a pseudonym, and the free-text
note of a StatusUpdate is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import pyarrow as pa

from veille.schemas.models import Record, RoutedAlert, RoutedIncident, StatusUpdate

TS = pa.timestamp("ms", tz="UTC")
STR_LIST = pa.list_(pa.string())

SCHEMAS: dict[str, pa.Schema] = {
    "incidents": pa.schema([
        ("id", pa.string()), ("municipality", pa.string()), ("category", pa.string()),
        ("severity", pa.string()), ("channel", pa.string()),
        ("lat", pa.float64()), ("lon", pa.float64()),
        ("occurred_at", TS), ("reported_at", TS), ("routed_at", TS), ("stored_at", TS),
        ("reporter_pseudonym", pa.string()), ("agencies", STR_LIST), ("cross_boundary", pa.bool_()),
        ("version", pa.uint64()),
    ]),
    "dispatches": pa.schema([
        ("event_type", pa.string()), ("event_id", pa.string()), ("agency_id", pa.string()),
        ("service", pa.string()), ("rule", pa.string()), ("cross_boundary", pa.bool_()),
        ("municipality", pa.string()), ("municipalities", STR_LIST), ("category", pa.string()),
        ("severity", pa.string()), ("reported_at", TS), ("routed_at", TS), ("version", pa.uint64()),
    ]),
    "status_events": pa.schema([
        ("id", pa.string()), ("incident_id", pa.string()), ("agency_id", pa.string()),
        ("status", pa.string()), ("at", TS), ("stored_at", TS),
    ]),
    "alerts": pa.schema([
        ("identifier", pa.string()), ("sender", pa.string()), ("sent", TS), ("status", pa.string()),
        ("msg_type", pa.string()), ("event", pa.string()), ("category", pa.string()),
        ("severity", pa.string()), ("urgency", pa.string()), ("headline", pa.string()),
        ("municipalities", STR_LIST), ("agencies", STR_LIST), ("routed_at", TS), ("stored_at", TS),
        ("version", pa.uint64()),
        # migrations/0003: what closes, supersedes or expires an alert, and the alert itself
        ("scope", pa.string()), ("references", STR_LIST), ("expires", TS), ("cap_json", pa.string()),
    ]),
}
TABLES = tuple(SCHEMAS)


def version_of(routed_at: datetime) -> int:
    """Row version of a routed event: its routing time in ms (later routing decision wins)."""
    return int(routed_at.timestamp() * 1000)


def alert_event_id(alert: RoutedAlert) -> str:
    """CAP identifiers are unique per sender only."""
    return f"{alert.sender}/{alert.identifier}"


def to_rows(records: Iterable[Record], stored_at: datetime) -> dict[str, pa.Table]:
    """Column-wise rows for every table (empty tables included) from decoded records."""
    cols: dict[str, dict[str, list[object]]] = {
        t: {name: [] for name in s.names} for t, s in SCHEMAS.items()
    }

    def add(table: str, **row: object) -> None:
        target = cols[table]
        for name, values in target.items():
            values.append(row[name])

    for rec in records:
        if isinstance(rec, RoutedIncident):
            version = version_of(rec.routed_at)
            add("incidents", id=str(rec.id), municipality=rec.municipality,
                category=str(rec.category), severity=str(rec.severity), channel=str(rec.channel),
                lat=rec.location.lat if rec.location else None,
                lon=rec.location.lon if rec.location else None,
                occurred_at=rec.occurred_at, reported_at=rec.reported_at, routed_at=rec.routed_at,
                stored_at=stored_at, reporter_pseudonym=rec.reporter_pseudonym,
                agencies=sorted({d.agency_id for d in rec.dispatches}),
                cross_boundary=any(d.cross_boundary for d in rec.dispatches), version=version)
            for d in rec.dispatches:
                add("dispatches", event_type="incident", event_id=str(rec.id), agency_id=d.agency_id,
                    service=str(d.service), rule=d.rule, cross_boundary=d.cross_boundary,
                    municipality=rec.municipality, municipalities=[rec.municipality],
                    category=str(rec.category), severity=str(rec.severity),
                    reported_at=rec.reported_at, routed_at=rec.routed_at, version=version)
        elif isinstance(rec, RoutedAlert):
            version = version_of(rec.routed_at)
            munis = sorted(set(rec.municipalities))
            add("alerts", identifier=rec.identifier, sender=rec.sender, sent=rec.sent, status=rec.status,
                msg_type=rec.msg_type, event=rec.event, category=rec.category, severity=rec.severity,
                urgency=rec.urgency, headline=rec.headline, municipalities=munis,
                agencies=sorted({d.agency_id for d in rec.dispatches}), routed_at=rec.routed_at,
                stored_at=stored_at, version=version, scope=rec.scope, references=rec.references,
                expires=rec.expires, cap_json=rec.cap_json)
            for d in rec.dispatches:
                add("dispatches", event_type="alert", event_id=alert_event_id(rec), agency_id=d.agency_id,
                    service=str(d.service), rule=d.rule, cross_boundary=d.cross_boundary,
                    municipality=munis[0] if len(munis) == 1 else "", municipalities=munis,
                    category=rec.category, severity=rec.severity, reported_at=rec.sent,
                    routed_at=rec.routed_at, version=version)
        elif isinstance(rec, StatusUpdate):
            add("status_events", id=str(rec.id), incident_id=str(rec.incident_id), agency_id=rec.agency_id,
                status=str(rec.status), at=rec.at, stored_at=stored_at)
        else:
            raise TypeError(f"the sink does not store {type(rec).__name__} records")
    return {t: pa.Table.from_pydict(cols[t], schema=SCHEMAS[t]) for t in TABLES}
