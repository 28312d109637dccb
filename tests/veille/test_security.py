"""Authentication, ACLs and quotas on the real broker (the session broker runs with auth on)."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient

from veille.config import Settings
from veille.producers.sdk import publisher_config
from veille.quotas import QuotaError, apply_quotas
from veille.security import (
    COMPONENTS,
    acl_plan,
    agency_user,
    current_acls,
    load_credentials,
    municipality_user,
    principals,
    provision,
    settings_for,
)
from veille.territory import load_territory
from veille.territory.topics import territory_topic_specs
from veille.topics import Topics, ensure_topics

if TYPE_CHECKING:
    from conftest import KafkaFixture

TERRITORY = load_territory(Settings().territory_dir)
MUNIS = sorted(TERRITORY.municipalities)
AGENCIES = sorted(TERRITORY.agencies)
QUOTA_BYTES = 100_000  # bytes/s per municipality in these tests
HOG, NEIGHBOUR = MUNIS[-1], MUNIS[-2]  # quota test only: the hog stays throttled a while


# --------------------------------------------------------------------------- the policy, no broker


def test_plan_municipality_writes_only_its_own_intake() -> None:
    plan = acl_plan("v", MUNIS, AGENCIES)
    t = Topics("v")
    for insee in MUNIS:
        mine = {(g.resource, g.name, g.operation, g.prefixed)
                for g in plan if g.user == municipality_user(insee)}
        own = t.intake(insee)
        assert mine == {("topic", own, "WRITE", False), ("topic", own, "DESCRIBE", False)}


def test_plan_nobody_else_writes_intake_but_intake_and_simulator() -> None:
    plan = acl_plan("v", MUNIS, AGENCIES)
    writers = {g.user for g in plan if g.operation == "WRITE" and g.name.startswith("v.intake.")}
    assert writers == {municipality_user(m) for m in MUNIS} | {"intake", "simulator"}
    readers_of_dispatch = {g.user for g in plan if g.operation == "READ" and g.name.startswith("v.dispatch.")}
    # Each agency its own; the deliverer every one, to push them to the bodies without a consumer;
    # the intake every one, for the agencies' desk (each account sees its own body's only).
    assert readers_of_dispatch == {agency_user(a) for a in AGENCIES} | {"deliver", "intake"}
    deliver_writes = {g.name for g in plan if g.user == "deliver" and g.operation == "WRITE"}
    assert deliver_writes == {"v.delivery", "v.status"}
    # The routing records (no personal data): the sink, the intake's Open311 read model, the
    # router's escalation worker (it reads refusals and acknowledgements back), the notifier,
    # the PCS cascade (it reads the routed alerts).
    routed_readers = {g.user for g in plan if g.operation == "READ" and g.name == "v.routed"}
    assert routed_readers == {"sink", "intake", "router", "notify", "pcs"}
    # Consents to hear back hold contacts: the intake writes them, the notifier alone reads them.
    consent = {(g.user, g.operation) for g in plan if g.name == "v.notify.consent"}
    assert {u for u, op in consent if op == "READ"} == {"notify"}
    assert {u for u, op in consent if op == "WRITE"} == {"intake", "notify"}
    # The notifier's state changelog: its own, read and written by nobody else.
    tracks = {(g.user, g.operation) for g in plan if g.name == "v.notify.tracks"}
    assert tracks == {("notify", "READ"), ("notify", "WRITE"), ("notify", "DESCRIBE")}
    # The delivery receipts (every attempt to push a dispatch to its body): the sink stores them.
    assert "sink" in {g.user for g in plan if g.operation == "READ" and g.name == "v.delivery"}
    # Only the router sees the restricted dead letters' topic, and only to write.
    restricted = {(g.user, g.operation) for g in plan if g.name == "v.deadletter.restricted"}
    assert restricted == {("router", "WRITE"), ("router", "DESCRIBE")}
    # The grouping topic carries reports with their contacts: the router's apps alone use it.
    grouping = {(g.user, g.operation) for g in plan if g.name == "v.grouping"}
    assert grouping == {("router", "READ"), ("router", "WRITE"), ("router", "DESCRIBE")}
    assert not any(g.name.startswith("v.grouping") and g.prefixed for g in plan)
    assert not any(g.resource == "cluster" for g in plan)  # no IdempotentWrite needed on Kafka 4
    assert len(plan) == len(set(plan))


def test_principals_cover_the_territory() -> None:
    names = principals(MUNIS, AGENCIES)
    assert len(names) == len(set(names)) == len(MUNIS) + len(AGENCIES) + len(COMPONENTS)
    assert "muni-35401" in names and "agency-sdis35" in names and "router" in names


def test_quotas_without_kafka_tools_say_where_to_point(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache",
                        bootstrap_servers="127.0.0.1:1")
    assert settings.kafka_tools() is None  # no local broker ran in this state dir
    with pytest.raises(QuotaError, match="VEILLE_KAFKA_TOOLS_DIR"):
        apply_quotas(settings, {"muni-35401": {"producer_byte_rate": 1000.0}})
    empty = tmp_path / "libs"
    empty.mkdir()
    with pytest.raises(QuotaError, match=r"no kafka_2\.13 jar"):
        apply_quotas(settings.model_copy(update={"kafka_tools_dir": str(empty)}),
                     {"muni-35401": {"producer_byte_rate": 1000.0}})


# --------------------------------------------------------------------------- on the broker


@dataclass
class Secured:
    settings: Settings  # admin, own topic prefix, the session state dir (credentials.json)
    topics: Topics
    first_run_seconds: float

    def as_user(self, user: str) -> Settings:
        return settings_for(self.settings, user)


@pytest.fixture(scope="module")
def secured(kafka: KafkaFixture) -> Secured:
    settings = kafka.settings.model_copy(update={
        "topic_prefix": f"s{uuid.uuid4().hex[:8]}", "municipality_producer_byte_rate": QUOTA_BYTES})
    ensure_topics(AdminClient(settings.kafka_client_config()), territory_topic_specs(settings))
    report = provision(settings)
    return Secured(settings, Topics(settings.topic_prefix), report.seconds)


def _deliver(settings: Settings, topic: str, value: bytes = b"x", timeout: float = 15,
             key: bytes | None = None) -> KafkaError | None:
    """Publish one message the way hub producers do (idempotent, acks=all); its delivery error."""
    errors: list[KafkaError | None] = []
    producer = Producer({**publisher_config(settings, "test"), "message.timeout.ms": int(timeout * 1000)})
    producer.produce(topic, value, key=key, on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(timeout + 5)
    assert errors, "no delivery report"
    return errors[0]


def _fetch_error(settings: Settings, topic: str, group: str, timeout: float = 15) -> tuple[int, list[bytes]]:
    """Read ``topic`` from the start in consumer group ``group``: (first error code, values read)."""
    consumer = Consumer({**settings.kafka_client_config(), "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                if values:
                    break
                continue
            err = msg.error()
            if err is not None:
                return err.code(), values
            values.append(msg.value() or b"")
        return 0, values
    finally:
        consumer.close()


def _auth_error(settings: Settings, client: type[Producer] | type[AdminClient], timeout: float = 10) -> float:
    """Seconds until ``client`` with ``settings`` reports an authentication error (fails if none)."""
    errors: list[KafkaError] = []
    began = time.monotonic()
    conf: dict[str, Any] = {**settings.kafka_client_config(), "error_cb": errors.append, "log_level": 0}
    instance = client(conf)
    while not errors and time.monotonic() - began < timeout:
        instance.poll(0.1)  # error_cb is served by poll
    assert errors and errors[0].code() == KafkaError._AUTHENTICATION, errors
    return time.monotonic() - began


def test_wrong_password_is_refused_fast(secured: Secured) -> None:
    bad = secured.settings.with_kafka_user("muni-35401", "not-the-password")
    assert _auth_error(bad, Producer) < 5
    assert _auth_error(bad, AdminClient) < 5
    assert _auth_error(secured.settings.with_kafka_user("nobody-at-all", "x"), Producer) < 5
    # A client that does not even try SASL gets nothing either: the broker closes on it.
    plain = Producer({"bootstrap.servers": secured.settings.kafka_bootstrap(), "log_level": 0,
                      "message.timeout.ms": 1000})
    errors: list[KafkaError | None] = []
    plain.produce(secured.topics.intake("35401"), b"x", on_delivery=lambda err, _msg: errors.append(err))
    plain.flush(5)
    assert errors and errors[0] is not None


def test_municipality_writes_its_own_intake_only(secured: Secured) -> None:
    muni = secured.as_user(municipality_user("35401"))
    assert _deliver(muni, secured.topics.intake("35401")) is None  # idempotent: no IdempotentWrite
    err = _deliver(muni, secured.topics.intake("35402"))
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    for topic in (secured.topics.alerts, secured.topics.routed, secured.topics.dispatch("sdis35")):
        err = _deliver(muni, topic)
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, topic


def test_municipality_cannot_read_dispatch_or_intake(secured: Secured) -> None:
    muni = secured.as_user(municipality_user("35401"))
    dispatch = secured.topics.dispatch("pm-35401")
    assert _deliver(secured.settings, dispatch) is None  # something to steal
    # The topic is not even visible to it...
    meta = AdminClient(muni.kafka_client_config()).list_topics(dispatch, timeout=10).topics[dispatch]
    assert meta.error is not None and meta.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # ...and reading fails (it has no consumer group either), its own intake topic included.
    denied = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED}
    for topic in (dispatch, secured.topics.intake("35401")):
        code, values = _fetch_error(muni, topic, "agency-pm-35401.sneaky")
        assert code in denied and not values, topic


def test_agency_reads_its_own_dispatch_topic_only(secured: Secured) -> None:
    mine, other = secured.topics.dispatch("sdis35"), secured.topics.dispatch("pm-35402")
    payload = uuid.uuid4().bytes
    assert _deliver(secured.settings, mine, payload) is None  # as admin: the router's job
    agency = secured.as_user(agency_user("sdis35"))
    consumer = Consumer({**agency.kafka_client_config(), "group.id": f"agency-sdis35.{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": True})
    consumer.subscribe([mine])
    try:
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while payload not in got and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                got.append(msg.value() or b"")
        assert payload in got
    finally:
        consumer.close()
    code, _ = _fetch_error(agency, other, "agency-sdis35.peek")  # its group: the topic is refused
    assert code == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # A group outside its prefix is refused even on its own topic.
    bad_group = Consumer({**agency.kafka_client_config(), "group.id": "someone-else",
                          "auto.offset.reset": "earliest"})
    bad_group.subscribe([mine])
    try:
        deadline = time.monotonic() + 15
        code = 0
        while not code and time.monotonic() < deadline:
            msg = bad_group.poll(0.5)
            err = msg.error() if msg is not None else None
            if err is not None:
                code = err.code()
        assert code == KafkaError.GROUP_AUTHORIZATION_FAILED
    finally:
        bad_group.close()
    # And it may report status updates.
    assert _deliver(agency, secured.topics.status) is None


def test_router_cannot_write_intake(secured: Secured) -> None:
    router = secured.as_user("router")
    err = _deliver(router, secured.topics.intake("35401"))
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert _deliver(router, secured.topics.dispatch("sdis35")) is None


def test_intake_reads_routing_records_for_its_open311_read_model(secured: Secured) -> None:
    from datetime import UTC, datetime

    from veille.producers.open311_requests import RequestBook
    from veille.schemas.models import RoutedIncident

    now = datetime.now(UTC)
    incident_id = uuid.uuid4()
    record = RoutedIncident(id=incident_id, municipality="35401", category="graffiti", severity="minor",
                            channel="app", occurred_at=now, reported_at=now, routed_at=now, dispatches=[])
    assert _deliver(secured.settings, secured.topics.routed, record.encode()) is None
    book = RequestBook(secured.as_user("intake"))
    book.start()
    try:
        deadline = time.monotonic() + 20
        while book.get(str(incident_id)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert book.get(str(incident_id)) is not None and book.caught_up.is_set()
    finally:
        book.stop()
    # ...and nothing else: it still cannot read what the municipalities publish (it only writes there).
    code, _ = _fetch_error(secured.as_user("intake"), secured.topics.intake("35401"), "veille-open311-x")
    assert code in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED)


def test_only_the_notifier_reads_the_consents(secured: Secured) -> None:
    topic = secured.topics.notify_consent
    assert _deliver(secured.as_user("intake"), topic, b"consent", key=b"incident") is None
    for user in ("sink", "router", "deliver", "intake", "muni-35401", "agency-sdis35"):
        code, values = _fetch_error(secured.as_user(user), topic, f"{user}.consents")
        assert code in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED), user
        assert not values, user
    for user in ("sink", "muni-35401"):
        err = _deliver(secured.as_user(user), topic, b"forged", key=b"incident")
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, user
    code, values = _fetch_error(secured.as_user("notify"), topic, f"{secured.settings.topic_prefix}.notify")
    assert code == 0 and values == [b"consent"]


def test_only_the_notifier_reads_and_writes_its_changelog(secured: Secured) -> None:
    import datetime as dt

    from veille.notify.changelog import TrackChangelog
    from veille.notify.changes import Track
    from veille.notify.tracks import Entry, TrackTable

    topic = secured.topics.notify_tracks
    incident = uuid.uuid4()
    changelog = TrackChangelog(secured.as_user("notify"), "test-notify-tracks")
    track = Track(closed_at=dt.datetime.now(dt.UTC).isoformat())
    assert changelog.write(0, incident, Entry(track, None))
    changelog.close()
    table = TrackTable()
    TrackChangelog(secured.as_user("notify"), "test-notify-restore").restore([0], table, timeout=30)
    assert table.get(0, incident) is not None  # restored as the notifier restores it: no group
    for user in ("sink", "router", "deliver", "intake", "muni-35401", "agency-sdis35"):
        code, values = _fetch_error(secured.as_user(user), topic, f"{user}.tracks")
        assert code in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED), user
        assert not values, user
        err = _deliver(secured.as_user(user), topic, b"forged", key=incident.bytes)
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, user


@dataclass
class Burst:
    acked_bytes: int = 0
    failed: int = 0
    max_throttle_ms: int = 0
    latencies: list[float] = field(default_factory=list)


def _publish(settings: Settings, topic: str, *, size: int, count: int, pace: float,
             timeout_ms: int) -> Burst:
    out = Burst()

    def on_stats(raw: str) -> None:
        brokers = json.loads(raw)["brokers"].values()
        out.max_throttle_ms = max([out.max_throttle_ms, *(b["throttle"]["max"] for b in brokers)])

    def done(sent: float) -> Callable[[Any, Any], None]:
        def cb(err: KafkaError | None, msg: Any) -> None:
            if err is None:
                out.acked_bytes += len(msg.value())
                out.latencies.append(time.monotonic() - sent)
            else:
                out.failed += 1
        return cb

    producer = Producer({**publisher_config(settings, "quota-test"), "compression.type": "none",
                         "statistics.interval.ms": 100, "stats_cb": on_stats,
                         "delivery.timeout.ms": timeout_ms, "log_level": 0})
    payload = os.urandom(size)  # incompressible
    for _ in range(count):
        producer.produce(topic, payload, on_delivery=done(time.monotonic()))
        producer.poll(0)
        if pace:
            time.sleep(pace)
    producer.flush(timeout_ms / 1000 + 5)
    producer.poll(0.3)  # one more stats report
    return out


def test_quota_throttles_the_flooding_municipality_not_its_neighbour(secured: Secured) -> None:
    hog_settings = secured.as_user(municipality_user(HOG))
    neighbour_settings = secured.as_user(municipality_user(NEIGHBOUR))
    results: dict[str, Burst] = {}
    offered = 300 * 10_000  # 3 MB at once: 30x the 100 KB/s quota
    hog = threading.Thread(target=lambda: results.setdefault("hog", _publish(
        hog_settings, secured.topics.intake(HOG), size=10_000, count=300, pace=0, timeout_ms=6000)))
    began = time.monotonic()
    hog.start()
    time.sleep(0.5)  # the flood is on
    # The neighbour publishes 40 reports of 1 KB over 2 s, well within its own quota.
    results["neighbour"] = _publish(neighbour_settings, secured.topics.intake(NEIGHBOUR),
                                    size=1_000, count=40, pace=0.05, timeout_ms=6000)
    hog.join(30)
    elapsed = time.monotonic() - began
    flood, calm = results["hog"], results["neighbour"]
    print(f"hog: acked {flood.acked_bytes} of {offered} bytes, {flood.failed} timed out, "
          f"max throttle {flood.max_throttle_ms} ms; neighbour: {calm.acked_bytes} bytes, "
          f"max throttle {calm.max_throttle_ms} ms, max latency {max(calm.latencies):.3f} s; {elapsed:.1f} s")
    assert flood.max_throttle_ms >= 1000  # the broker told the hog to back off
    # What got in went in the first requests, before the broker measured the rate; the rest
    # waited out the throttle until its delivery timeout.
    assert flood.failed > 0 and flood.acked_bytes < offered
    assert calm.failed == 0 and calm.acked_bytes == 40 * 1_000
    assert calm.max_throttle_ms == 0
    assert max(calm.latencies) < 2.0


def test_provision_is_idempotent(secured: Secured) -> None:
    admin = AdminClient(secured.settings.kafka_client_config())
    before = current_acls(admin)
    stored = {u: v["password"] for u, v in load_credentials(secured.settings).users.items()}
    report = provision(secured.settings)
    assert report.acls_added == 0 and not report.users_created and not report.users_reset
    assert report.users_kept == len(principals(MUNIS, AGENCIES)) and not report.quotas_applied
    assert current_acls(admin) == before
    assert set(acl_plan(secured.settings.topic_prefix, MUNIS, AGENCIES)) <= before
    assert {u: v["password"] for u, v in load_credentials(secured.settings).users.items()} == stored
    assert report.seconds < 5 < secured.first_run_seconds + 5  # nothing re-applied: no JVM started
    store = load_credentials(secured.settings).path
    assert store.stat().st_mode & 0o777 == 0o600


def test_rotate_replaces_one_password(secured: Secured) -> None:
    user = municipality_user("35403")
    old = secured.as_user(user)
    report = provision(secured.settings, rotate=[user], quotas=False)
    assert report.users_rotated == [user]
    new = secured.as_user(user)
    assert new.sasl_password.get_secret_value() != old.sasl_password.get_secret_value()
    assert _deliver(new, secured.topics.intake("35403")) is None
    assert _auth_error(old, Producer) < 5  # the old password is dead at once


def test_provision_as_a_non_admin_says_so_instead_of_crashing(secured: Secured) -> None:
    """Issue 15 #9: confluent-kafka 2.16.1 aborts inside describe_user_scram_credentials when a
    non-admin calls it; the principal is checked first, in a child process to see its exit."""
    import subprocess
    import sys

    from veille.security import user_env

    env = {**os.environ, **user_env(secured.settings, municipality_user("35401")),
           "VEILLE_TOPIC_PREFIX": secured.settings.topic_prefix}
    done = subprocess.run([sys.executable, "-m", "veille.cli", "security", "provision"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert "may not administer the cluster" in done.stderr and "muni-35401" in done.stderr


def test_quotas_need_kafka_jars_and_java_not_the_local_broker(secured: Secured, tmp_path: Path) -> None:
    """Quota provisioning runs Kafka's ConfigCommand from wherever VEILLE_KAFKA_TOOLS_DIR says
    (a Kafka distribution's libs/ in production): the local broker's cache is never asked for."""
    recorded = secured.settings.kafka_tools()
    assert recorded is not None  # the session broker's broker.json names the jars it runs from
    libs = tmp_path / "kafka" / "libs"
    libs.mkdir(parents=True)
    for jar in recorded.glob("*.jar"):
        (libs / jar.name).symlink_to(jar)
    no_cache = tmp_path / "no-cache"
    settings = secured.settings.model_copy(update={"kafka_tools_dir": str(libs), "cache_dir": no_cache})
    assert settings.kafka_tools() == libs
    apply_quotas(settings, {f"quota-probe-{uuid.uuid4().hex[:8]}": {"producer_byte_rate": 123_456.0}})
    assert not no_cache.exists()
    assert "veille.local.broker" not in _imports_of("veille.security")


def _imports_of(module: str) -> set[str]:
    import subprocess
    import sys

    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split())
