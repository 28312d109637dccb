"""``veille publish``, ``veille import`` and ``veille simulate`` as a user runs them (subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from paths import FIXTURES
from producer_helpers import MUNICIPALITIES, consume, message_count

from veille.config import Settings
from veille.schemas.models import Alert, Channel, Incident, Severity
from veille.territory.topics import territory_topic_specs
from veille.topics import Topics, ensure_topics

VEILLE = [sys.executable, "-m", "veille.cli"]


@pytest.fixture(scope="module")
def hub(kafka: Any) -> tuple[Settings, dict[str, str]]:
    prefix = f"tcli{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "VEILLE_TOPIC_PREFIX": prefix, "VEILLE_STATE_DIR": str(kafka.settings.state_dir)}
    settings = kafka.settings.model_copy(update={"topic_prefix": prefix})
    # The commands create the topics themselves; done here too so that tests can count
    # messages before the first command runs.
    ensure_topics(AdminClient(settings.kafka_client_config()), territory_topic_specs(settings))
    return settings, env


def veille(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VEILLE, *args], env=env, capture_output=True, text=True, timeout=60)


def test_publish_incident_then_consume(hub: tuple[Settings, dict[str, str]]) -> None:
    settings, env = hub
    done = veille(env, "publish", "incident", "--municipality", "35403", "--category", "flood",
                  "--severity", "severe", "--lat", "48.15", "--lon", "-1.55", "--channel", "phone",
                  "--description", "Route coupée", "--reporter-phone", "0601020304")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["topic"] == Topics(settings.topic_prefix).intake("35403")
    (msg,) = consume(settings, [answer["topic"]], 1)
    got = Incident.decode(msg.value())
    assert str(got.id) == answer["id"] and got.severity == Severity.severe and got.channel == Channel.phone
    assert got.location is not None and got.location.lat == 48.15
    assert got.reporter is not None and got.reporter.phone == "0601020304"
    assert "0601020304" not in done.stdout + done.stderr


def test_rejected_incident_exits_2_and_publishes_nothing(hub: tuple[Settings, dict[str, str]]) -> None:
    settings, env = hub
    done = veille(env, "publish", "incident", "--municipality", "99999", "--category", "flood",
                  "--severity", "minor")
    assert done.returncode == 2
    assert "municipality: 99999 is not a municipality of this hub's territory" in done.stderr
    done = veille(env, "publish", "incident", "--municipality", "35401", "--category", "flood",
                  "--severity", "minor", "--lat", "120", "--lon", "0")
    assert done.returncode == 2 and "location.lat: Input should be less than or equal to 90" in done.stderr
    assert message_count(settings, [Topics(settings.topic_prefix).intake("35401")]) == 0


def test_publish_alert_from_file(hub: tuple[Settings, dict[str, str]]) -> None:
    settings, env = hub
    done = veille(env, "publish", "alert", "--file", str(FIXTURES / "alert.json"))
    assert done.returncode == 0, done.stderr
    (msg,) = consume(settings, [Topics(settings.topic_prefix).alerts], 1)
    assert Alert.decode(msg.value()).identifier == "urn:oid:2.49.0.1.250.0.cli.1"


def test_import_reports_bad_lines_and_exits_1(hub: tuple[Settings, dict[str, str]]) -> None:
    settings, env = hub
    done = veille(env, "import", str(FIXTURES / "town_hall_log.csv"), "--channel", "phone", "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["ok"] == 3 and report["failed_lines"] == [4, 5, 6]
    assert {"line": 4, "field": "location", "reason": "lat and lon go together"} in report["failures"]
    topics = Topics(settings.topic_prefix)
    assert message_count(settings, [topics.intake("35402"), topics.intake("35406")]) == 3


def test_simulate_prints_the_summary(hub: tuple[Settings, dict[str, str]]) -> None:
    settings, env = hub
    topics = Topics(settings.topic_prefix)
    every_topic = [topics.intake(m) for m in MUNICIPALITIES] + [topics.alerts, topics.status]
    before = message_count(settings, every_topic)
    done = veille(env, "simulate", "--seconds", "1.5", "--rate", "60", "--seed", "7", "--flash-flood")
    assert done.returncode == 0, done.stderr
    assert "Alert          agency                                  1             1" in done.stdout
    total = done.stdout.strip().splitlines()[-1]
    assert total.startswith("total: ") and "0 failed, 0 pending" in total
    published = int(total.split()[1])
    assert published > 40
    assert message_count(settings, every_topic) - before == published
