"""Producer-side validation and routing, without a broker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from producer_helpers import alert, incident, status

from veille.config import Settings
from veille.producers.files import parse_csv, parse_jsonl
from veille.producers.sdk import (
    RECORD_FIELD,
    FieldError,
    Rejected,
    publisher_config,
    resolve_type,
    validate,
)
from veille.schemas.models import Alert, Incident, StatusUpdate

PARIS = ZoneInfo("Europe/Paris")


def reasons(exc: Rejected) -> dict[str, str]:
    return {e.field: e.reason for e in exc.errors}


def test_producer_config_is_idempotent_with_acks_all() -> None:
    settings = Settings(bootstrap_servers="127.0.0.1:1", linger_ms=7, delivery_timeout_ms=12_345)
    conf = publisher_config(settings, "x")
    assert conf["enable.idempotence"] is True
    assert conf["acks"] == "all"
    assert conf["linger.ms"] == 7
    assert conf["delivery.timeout.ms"] == 12_345
    assert conf["compression.type"] in ("lz4", "zstd")


def test_valid_dicts_become_models() -> None:
    assert isinstance(validate(incident()), Incident)
    assert isinstance(validate(alert(), "Alert"), Alert)
    assert isinstance(validate({**status(str(uuid.uuid4())), "type": "status"}), StatusUpdate)


def test_each_invalid_field_is_listed_with_its_reason() -> None:
    bad = incident(municipality="3540", category="earthquake", location={"lat": 91, "lon": -1.7})
    del bad["severity"]
    with pytest.raises(Rejected) as info:
        validate(bad, "Incident")
    got = reasons(info.value)
    assert set(got) == {"municipality", "category", "location.lat", "severity"}
    assert "pattern" in got["municipality"]
    assert "flood" in got["category"]  # the allowed values are spelled out
    assert got["location.lat"] == "Input should be less than or equal to 90"
    assert got["severity"] == "Field required"
    assert info.value.reason == "validation"
    assert "location.lat: Input should be less than or equal to 90" in str(info.value)


def test_record_level_rule_is_reported_on_the_record() -> None:
    now = datetime.now(UTC)
    with pytest.raises(Rejected) as info:
        validate(incident(occurred_at=now, reported_at=now - timedelta(hours=2)), "Incident")
    assert info.value.errors == [FieldError(RECORD_FIELD, "occurred_at is after reported_at")]


def test_personal_data_never_appears_in_errors() -> None:
    bad = incident(reporter={"name": "Jeanne Secret", "phone": "0" * 60})
    with pytest.raises(Rejected) as info:
        validate(bad, "Incident")
    assert "reporter.phone" in reasons(info.value)
    assert "Jeanne" not in str(info.value) and "000000" not in str(info.value)


def test_nested_alert_errors_have_full_paths() -> None:
    bad = alert()
    bad["infos"][0]["areas"][0] = {"area_desc": "nowhere"}
    with pytest.raises(Rejected) as info:
        validate(bad, "Alert")
    assert reasons(info.value) == {
        "infos.0.areas.0": "an area needs at least one polygon, circle or geocode"}


def test_type_names() -> None:
    assert resolve_type(None) == "Incident"
    assert resolve_type("alert") == "Alert"
    assert resolve_type("StatusUpdate") == "StatusUpdate"
    with pytest.raises(Rejected) as info:
        validate({**alert(), "type": "alert"}, "Incident")  # sent to the wrong endpoint
    assert info.value.errors == [FieldError("type", "'alert' given where Incident is expected")]
    with pytest.raises(Rejected) as info:
        resolve_type("Dispatch")
    assert info.value.reason == "unknown_type"
    assert info.value.errors[0].field == "type"


def test_jsonl_lines_defaults_and_errors() -> None:
    text = "\n".join([
        '{"municipality": "35401", "category": "flood", "severity": "minor", '
        '"occurred_at": "2025-06-03T10:00:00+02:00"}',
        "",
        "{not json",
        "[1, 2]",
        '{"type": "alert", "identifier": "x"}',
    ])
    items = dict(parse_jsonl(text, "web"))
    assert set(items) == {1, 3, 4, 5}
    first = items[1]
    assert isinstance(first, dict)
    assert first["channel"] == "web" and uuid.UUID(first["id"]) and first["reported_at"]
    assert isinstance(items[3], Rejected) and items[3].reason == "invalid_json"
    assert isinstance(items[4], Rejected) and items[4].reason == "not_an_object"
    assert items[5] == {"type": "alert", "identifier": "x"}  # no incident defaults on alerts


def test_csv_rows_local_times_decimal_commas_and_stable_ids() -> None:
    text = ("municipality;category;severity;lat;lon;occurred_at;description;reporter_phone\n"
            "35402;fallen_tree;moderate;48,15;-1,8;2025-06-03 14:20;Arbre sur la route;0601020304\n"
            "35402;flood;minor;48.15;;2025-06-03 15:00;;\n")
    rows = dict(parse_csv(text, "phone", PARIS))
    row = rows[2]
    assert isinstance(row, dict)
    assert row["location"] == {"lat": "48.15", "lon": "-1.8"}
    assert row["occurred_at"] == datetime(2025, 6, 3, 14, 20, tzinfo=PARIS)
    assert row["channel"] == "phone"
    assert row["reporter"] == {"phone": "0601020304"}
    model = validate(row, "Incident")
    assert isinstance(model, Incident) and model.location and model.location.lat == 48.15
    # Same row, same id: a re-imported log does not create new incidents.
    again = dict(parse_csv(text, "phone", PARIS))[2]
    assert isinstance(again, dict) and again["id"] == row["id"]
    assert isinstance(rows[3], Rejected)
    assert rows[3].errors == [FieldError("location", "lat and lon go together")]


def test_csv_header_errors_stop_the_file() -> None:
    text = "municipality,category,severity,when\n35401,flood,minor,2025-06-03T10:00:00Z\n"
    rows = list(parse_csv(text, "phone", PARIS))
    assert len(rows) == 1
    line, rejected = rows[0]
    assert line == 1 and isinstance(rejected, Rejected)
    assert {(e.field, e.reason) for e in rejected.errors} == {
        ("when", "unknown column"), ("occurred_at", "required column missing")}
