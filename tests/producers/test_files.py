"""File import (JSON lines, CSV desk logs) against the real broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from paths import FIXTURES
from producer_helpers import consume, isolated_settings

from veille.config import Settings
from veille.producers.files import import_file
from veille.producers.sdk import Publisher
from veille.schemas.models import Alert, Channel, Incident, StatusUpdate
from veille.topics import Topics


@pytest.fixture
def settings(kafka: Any) -> Settings:
    return isolated_settings(kafka.settings, "files")


def test_jsonl_good_lines_published_bad_lines_reported(settings: Settings) -> None:
    topics = Topics(settings.topic_prefix)
    with Publisher(settings) as publisher:
        report = import_file(FIXTURES / "events_mixed.jsonl", publisher, channel=Channel.web)
    assert report.ok == 5
    assert report.failed_lines == [6, 7, 8]
    by_line: dict[int, set[str]] = {}
    for f in report.failures:
        by_line.setdefault(f.line, set()).add(f.field)
    assert by_line == {6: {"(record)"}, 7: {"municipality", "category"}, 8: {"type"}}
    assert "invalid JSON" in next(f.reason for f in report.failures if f.line == 6)
    assert not report.success

    incidents = [Incident.decode(m.value()) for m in consume(
        settings, [topics.intake(m) for m in ("35401", "35403", "35404")], 3)]
    assert {i.channel for i in incidents} == {Channel.app, Channel.sensor,
                                              Channel.neighbourhood_representative}
    assert {str(i.id) for i in incidents} <= set(report.ids)
    assert next(i for i in incidents if i.municipality == "35403").address == "2 place de l'Église"
    (a,) = consume(settings, [topics.alerts], 1)
    assert Alert.decode(a.value()).identifier == "urn:oid:2.49.0.1.250.0.fixture.1"
    (s,) = consume(settings, [topics.status], 1)
    assert str(StatusUpdate.decode(s.value()).incident_id) == "7d4f6a52-3b1e-4c8e-9a55-0d1f8f6c2b01"


def test_csv_desk_log(settings: Settings) -> None:
    topics = Topics(settings.topic_prefix)
    with Publisher(settings) as publisher:
        report = import_file(FIXTURES / "town_hall_log.csv", publisher, channel="phone")
    assert report.ok == 3
    assert [(f.line, f.field) for f in report.failures] == [
        (4, "location"), (5, "severity"), (6, "occurred_at")]
    assert "datetime" in report.failures[2].reason

    msgs = consume(settings, [topics.intake("35402"), topics.intake("35406")], 3)
    got = {i.category.value: i for i in (Incident.decode(m.value()) for m in msgs)}
    tree = got["fallen_tree"]
    assert tree.channel == Channel.phone  # the option's default for rows without channel
    assert tree.location is not None and tree.location.lat == 48.152  # decimal comma
    assert tree.occurred_at.isoformat() == "2025-06-03T06:40:00+00:00"  # Paris summer time
    assert tree.reporter is not None and tree.reporter.phone == "0601020304"
    dumping = got["illegal_dumping"]
    assert str(dumping.id) == "c6c7f4d4-8b88-4f0f-a2b3-2e5bb3f1f0a7"
    assert dumping.description == "Dépôt sauvage; sacs et gravats"
    assert dumping.channel == Channel.town_hall_desk
    assert got["broken_streetlight"].location is None


def test_import_is_reproducible_for_csv_ids(settings: Settings, tmp_path: Path) -> None:
    with Publisher(settings) as publisher:
        first = import_file(FIXTURES / "town_hall_log.csv", publisher)
        second = import_file(FIXTURES / "town_hall_log.csv", publisher)
    assert first.ids and sorted(first.ids) == sorted(second.ids)


def test_delivery_failures_are_reported_per_line(tmp_path: Path) -> None:
    s = Settings(bootstrap_servers="127.0.0.1:1", delivery_timeout_ms=1000, topic_prefix="nowhere")
    path = tmp_path / "two.csv"
    path.write_text("municipality,category,severity,occurred_at\n"
                    "35401,flood,minor,2025-06-03T10:00:00Z\n35401,storm,minor,2025-06-03T10:00:00Z\n")
    with Publisher(s, extra_config={"log_level": 0}) as publisher:
        report = import_file(path, publisher)
    assert report.ok == 0
    assert [(f.line, f.field) for f in report.failures] == [(2, "(delivery)"), (3, "(delivery)")]
    assert "MSG_TIMED_OUT" in report.failures[0].reason
