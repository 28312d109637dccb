"""The sink on the real broker and a real chDB store: nothing lost, nothing doubled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import REGISTRY
from sink_helpers import (
    EVENT_TABLES,
    chdb_store,
    counts,
    final_counts,
    receipts,
    routed_incident,
    scenario,
    today_cell,
)

from veille import cli
from veille.config import Settings
from veille.reads.indicators import compute
from veille.reads.service import serve
from veille.schemas import codec
from veille.schemas.models import DeadLetter, Record, RoutedIncident
from veille.sinks.pipeline import SinkPipeline
from veille.sinks.rows import to_rows
from veille.sinks.steps import RetryPolicy
from veille.sinks.store import ChdbStore
from veille.topics import Topics, TopicSpec, ensure_topics

if TYPE_CHECKING:
    from conftest import KafkaFixture

FAST_RETRY = RetryPolicy(initial=0.1, multiplier=2, maximum=0.4)


@dataclass
class SinkEnv:
    settings: Settings
    topics: Topics
    store: ChdbStore


@pytest.fixture
def env(kafka: KafkaFixture, tmp_path: Path) -> Iterator[SinkEnv]:
    settings = kafka.settings.model_copy(update={
        "state_dir": tmp_path, "bootstrap_servers": kafka.bootstrap,
        "topic_prefix": f"tsink{uuid.uuid4().hex[:10]}", "sink_batch_rows": 50, "sink_batch_seconds": 0.3,
    })
    topics = Topics(settings.topic_prefix)
    ensure_topics(AdminClient(settings.kafka_client_config()),
                  [TopicSpec(topics.routed, 3, 1), TopicSpec(topics.delivery, 3, 1),
                   TopicSpec(topics.dead_letter, 1, 1)])
    with chdb_store(settings.chdb_path) as store:
        yield SinkEnv(settings, topics, store)


def produce(settings: Settings, topic: str, values: list[bytes]) -> None:
    producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True, "acks": "all"})
    for i, value in enumerate(values):
        producer.produce(topic, key=str(i).encode(), value=value)
    assert producer.flush(30) == 0


def expected_counts(records: list[Record]) -> dict[str, int]:
    return {t: rows.num_rows for t, rows in to_rows(records, routed_incident(0).routed_at).items()}


def pipeline(env: SinkEnv, **kwargs: object) -> SinkPipeline:
    return SinkPipeline(env.settings, env.store, retry=FAST_RETRY, **kwargs)


def committed(settings: Settings, topic: str, group: str) -> dict[int, int]:
    c = Consumer({**settings.kafka_client_config(), "group.id": group})
    try:
        return {tp.partition: tp.offset
                for tp in c.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)}
    finally:
        c.close()


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    c = Consumer({**settings.kafka_client_config(), "group.id": "watermarks"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(3)}
    finally:
        c.close()


def deadline(seconds: float) -> Callable[[], bool]:
    end = time.monotonic() + seconds
    return lambda: time.monotonic() > end


def metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_end_to_end_every_record_once(env: SinkEnv) -> None:
    records = scenario(40)
    produce(env.settings, env.topics.routed, [r.encode() for r in records])
    written_before = metric("veille_sink_rows_written_total", {"table": "incidents"})

    p = pipeline(env)
    stats = p.run(until=deadline(60), max_idle=2.0)

    expected = expected_counts(records)
    assert expected["incidents"] == 40 and expected["dispatches"] == 82
    assert final_counts(env.store) == {t: expected[t] for t in EVENT_TABLES}
    assert {t: n for t, n in counts(env.store).items() if t in EVENT_TABLES} == \
        {t: expected[t] for t in EVENT_TABLES}  # not even unmerged duplicates
    assert stats.messages == len(records) and stats.dead_lettered == 0 and stats.batches_committed >= 2
    assert committed(env.settings, env.topics.routed, p.group_id) == \
        end_offsets(env.settings, env.topics.routed)
    assert compute(env.store, today_cell())["reports"]["total"] == 40

    assert metric("veille_sink_rows_written_total", {"table": "incidents"}) - written_before == 40
    assert metric("veille_sink_last_commit_timestamp") > time.time() - 60
    assert metric("veille_sink_consumer_lag", {"topic": env.topics.routed, "partition": "0"}) == 0
    assert metric("veille_sink_end_to_end_seconds_count") >= 40
    assert metric("veille_sink_insert_seconds_count", {"table": "dispatches"}) >= 1


def test_stop_mid_stream_restart_and_full_replay(env: SinkEnv) -> None:
    records = scenario(100)
    produce(env.settings, env.topics.routed, [r.encode() for r in records])

    first = pipeline(env, batch_rows=30)
    s1 = first.run(until=lambda: first.stats.batches_committed >= 2)
    assert 0 < s1.messages < len(records)  # stopped mid-stream, after committed batches

    second = pipeline(env, batch_rows=30)
    s2 = second.run(until=deadline(60), max_idle=2.0)
    assert s1.messages + s2.messages == len(records)  # committed offsets resume exactly
    expected = expected_counts(records)
    assert final_counts(env.store) == {t: expected[t] for t in EVENT_TABLES}
    before = compute(env.store, today_cell())

    # A full replay of the topic (as after a crash before any commit), cut into other batches.
    replay = pipeline(env, batch_rows=70, group_id=f"{env.settings.topic_prefix}.replay")
    replay.run(until=deadline(60), max_idle=2.0)
    assert final_counts(env.store) == {t: expected[t] for t in EVENT_TABLES}
    assert compute(env.store, today_cell()) == before


def test_delivery_receipts_are_stored_beside_routed_records(env: SinkEnv) -> None:
    """The sink reads <prefix>.delivery too: receipts in the same batches as routed records,
    each topic's offsets committed after the write, a full replay doubling nothing."""
    records = scenario(20)
    sent = receipts(15)
    produce(env.settings, env.topics.routed, [r.encode() for r in records])
    produce(env.settings, env.topics.delivery, [r.encode() for r in sent])
    # A routed record on the delivery topic is refused there, like any record on the wrong topic.
    produce(env.settings, env.topics.delivery, [records[0].encode()])
    wrong_before = metric("veille_sink_dead_lettered_total", {"reason": "wrong_record_type"})

    p = pipeline(env)
    assert p.topics == [env.topics.routed, env.topics.delivery, env.topics.pcs_cascade]  # pcs: issue 27
    stats = p.run(until=deadline(60), max_idle=2.0)

    expected = expected_counts([*records, *sent])
    assert expected["delivery_receipts"] == 30
    assert final_counts(env.store) == {t: expected[t] for t in EVENT_TABLES}
    assert {t: n for t, n in counts(env.store).items() if t in EVENT_TABLES} == \
        {t: expected[t] for t in EVENT_TABLES}
    assert stats.messages == len(records) + len(sent) + 1 and stats.dead_lettered == 1
    assert metric("veille_sink_dead_lettered_total", {"reason": "wrong_record_type"}) - wrong_before == 1
    for topic in (env.topics.routed, env.topics.delivery):
        assert committed(env.settings, topic, p.group_id) == end_offsets(env.settings, topic), topic
    assert metric("veille_sink_rows_written_total", {"table": "delivery_receipts"}) >= 30
    before = compute(env.store, today_cell())
    # 15 sdis35 webhook dispatches: every third undelivered (5), the others delivered after 40 min.
    (webhook,) = before["delivery"]["by_agency_method"]
    assert (webhook["dispatches"], webhook["delivered"], webhook["undelivered"]) == (15, 10, 5)

    replay = pipeline(env, batch_rows=7, group_id=f"{env.settings.topic_prefix}.replay")
    replay.run(until=deadline(60), max_idle=2.0)
    assert final_counts(env.store) == {t: expected[t] for t in EVENT_TABLES}
    assert compute(env.store, today_cell()) == before


def test_poison_messages_are_dead_lettered_and_the_rest_flows(env: SinkEnv) -> None:
    records = scenario(10)
    plain_incident = codec.encode("Incident", {
        "id": str(uuid.uuid4()), "municipality": "35401", "category": "flood", "severity": "severe",
        "occurred_at": records[0].reported_at, "reported_at": records[0].reported_at, "channel": "app"})
    garbage = b"definitely not avro"
    values = [r.encode() for r in records]
    values[3:3] = [garbage]
    values[8:8] = [plain_incident]
    wrong_before = metric("veille_sink_dead_lettered_total", {"reason": "wrong_record_type"})
    produce(env.settings, env.topics.routed, values)

    stats = pipeline(env).run(until=deadline(60), max_idle=2.0)
    assert stats.dead_lettered == 2
    expected = expected_counts(records)
    assert final_counts(env.store) == {t: expected[t] for t in EVENT_TABLES}
    assert metric("veille_sink_dead_lettered_total", {"reason": "wrong_record_type"}) - wrong_before == 1

    reader = Consumer({**env.settings.kafka_client_config(), "group.id": f"dlq-{uuid.uuid4()}",
                       "auto.offset.reset": "earliest"})
    reader.subscribe([env.topics.dead_letter])
    letters: list[DeadLetter] = []
    end = time.monotonic() + 20
    while len(letters) < 2 and time.monotonic() < end:
        msg = reader.poll(0.5)
        if msg is not None and msg.error() is None:
            letters.append(DeadLetter.decode(msg.value()))
    reader.close()
    by_reason = {d.reason: d for d in letters}
    assert set(by_reason) == {"unknown_format", "wrong_record_type"}
    assert by_reason["unknown_format"].original_value == garbage
    assert by_reason["wrong_record_type"].original_value == plain_incident
    for d in letters:
        assert d.component == "sink" and d.source_topic == env.topics.routed and d.source_offset >= 0


def test_write_failure_commits_nothing_then_recovers(env: SinkEnv) -> None:
    records = scenario(20)
    produce(env.settings, env.topics.routed, [r.encode() for r in records])
    failures_before = metric("veille_sink_write_failures_total")
    # A real failure: the table is gone from the server's catalog until re-attached.
    env.store.command("DETACH TABLE veille.status_events")
    p = pipeline(env)
    seen: dict[str, object] = {}

    def operator() -> None:
        end = time.monotonic() + 30
        while p.stats.write_failures < 3 and time.monotonic() < end:
            time.sleep(0.05)
        seen["failures"] = p.stats.write_failures
        seen["committed"] = committed(env.settings, env.topics.routed, p.group_id)
        seen["lag"] = lag_gauge(env.topics.routed)
        env.store.command("ATTACH TABLE veille.status_events")

    fixer = threading.Thread(target=operator)
    fixer.start()
    stats = p.run(until=deadline(60), max_idle=2.0)
    fixer.join()

    assert seen["failures"] >= 3  # type: ignore[operator]
    assert seen["lag"] == len(records)  # the backlog shows while the store is down...
    assert all(off < 0 for off in seen["committed"].values())  # type: ignore[attr-defined]
    assert metric("veille_sink_write_failures_total") - failures_before >= 3
    assert stats.batches_dropped == 0
    expected = expected_counts(records)
    assert final_counts(env.store) == {t: expected[t] for t in EVENT_TABLES}
    # The tables written before the failing one were re-inserted with the same token: skipped.
    assert {t: n for t, n in counts(env.store).items() if t in EVENT_TABLES} == \
        {t: expected[t] for t in EVENT_TABLES}
    assert committed(env.settings, env.topics.routed, p.group_id) == \
        end_offsets(env.settings, env.topics.routed)
    assert lag_gauge(env.topics.routed) == 0  # ...and drains once it is back


def lag_gauge(topic: str) -> float:
    return sum(s.value for m in REGISTRY.collect() if m.name == "veille_sink_consumer_lag"
               for s in m.samples if s.labels.get("topic") == topic)


def test_http_indicators_and_cli_over_http(env: SinkEnv, capsys: pytest.CaptureFixture[str]) -> None:
    records = scenario(12)
    for table, rows in to_rows(records, records[0].routed_at).items():
        env.store.insert(table, rows, f"{table}|direct")
    server = serve(env.store, 0)
    try:
        cell = today_cell()
        q = {"municipalities": ",".join(cell.municipalities), "from": str(cell.start), "to": str(cell.end)}
        resp = httpx.get(f"{server.url}/indicators", params=q, timeout=30)
        assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
        assert resp.json() == json.loads(json.dumps(compute(env.store, cell)))
        assert resp.json()["reports"]["total"] == 12
        assert httpx.get(f"{server.url}/indicators", params={"from": "x"}).status_code == 400
        assert "veille_sink_write_failures_total" in httpx.get(f"{server.url}/metrics").text

        assert cli.main(["indicators", "--url", server.url, "--municipalities", q["municipalities"],
                         "--from", q["from"], "--to", q["to"], "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["reports"]["total"] == 12
    finally:
        server.shutdown()
        server.server_close()


def test_sink_run_command_serves_and_stops_gracefully(kafka: KafkaFixture, tmp_path: Path) -> None:
    prefix = f"tsinkcli{uuid.uuid4().hex[:8]}"
    settings = Settings(state_dir=tmp_path, bootstrap_servers=kafka.bootstrap, topic_prefix=prefix)
    topics = Topics(prefix)
    ensure_topics(AdminClient(settings.kafka_client_config()),
                  [TopicSpec(topics.routed, 3, 1), TopicSpec(topics.dead_letter, 1, 1)])
    incidents: list[RoutedIncident] = [routed_incident(i) for i in range(15)]
    produce(settings, topics.routed, [r.encode() for r in incidents])
    run_env = {**os.environ, "VEILLE_STATE_DIR": str(tmp_path), "VEILLE_BOOTSTRAP_SERVERS": kafka.bootstrap,
               "VEILLE_TOPIC_PREFIX": prefix, "VEILLE_SINK_BATCH_SECONDS": "0.2"}
    proc = subprocess.Popen([sys.executable, "-m", "veille.cli", "sink", "run", "--port", "0"],
                            env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        info = tmp_path / "sink.json"
        end = time.monotonic() + 30
        while not info.exists() and time.monotonic() < end and proc.poll() is None:
            time.sleep(0.1)
        assert info.exists(), "the sink did not record its address"
        cell = today_cell()
        args = ["indicators", "--municipalities", ",".join(cell.municipalities),
                "--from", str(cell.start), "--to", str(cell.end), "--json"]
        total = -1
        while total != 15 and time.monotonic() < end + 30:
            # No --url: found through state_dir/sink.json, since the store is the sink's.
            out = subprocess.run([sys.executable, "-m", "veille.cli", *args], env=run_env,
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            total = json.loads(out.stdout)["reports"]["total"]
        assert total == 15
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "sink stopped" in output
    assert not (tmp_path / "sink.json").exists()


def test_a_fenced_consumer_rejoins_and_loses_nothing(env: SinkEnv) -> None:
    """Static membership: another consumer taking the sink's group.instance.id (what a
    coordinator failover can look like) fences the sink's consumer; the sink replaces it and
    every record is stored once, offsets committed to the end."""
    records = scenario(60)
    produce(env.settings, env.topics.routed, [r.encode() for r in records[:30]])
    static = {"group.instance.id": f"sink-fence-{uuid.uuid4().hex[:6]}", "session.timeout.ms": 10_000,
              "heartbeat.interval.ms": 1_000}
    p = pipeline(env, batch_rows=10, extra_consumer_config=static)
    rejoins = metric("veille_sink_consumer_rejoins_total")
    intruded = threading.Event()

    def intrude() -> None:
        wait_until = time.monotonic() + 60
        while p.stats.batches_committed < 1 and time.monotonic() < wait_until:
            time.sleep(0.1)
        other = Consumer({**env.settings.kafka_client_config(), "group.id": p.group_id, **static})
        other.subscribe([env.topics.routed])
        end = time.monotonic() + 8
        while time.monotonic() < end:
            other.poll(0.5)
        other.close()
        produce(env.settings, env.topics.routed, [r.encode() for r in records[30:]])
        intruded.set()

    thread = threading.Thread(target=intrude)
    thread.start()
    try:
        stats = p.run(until=_fenced_and_done(env, p, intruded, rejoins))
    finally:
        thread.join(60)
    expected = expected_counts(records)
    assert metric("veille_sink_consumer_rejoins_total") > rejoins
    assert final_counts(env.store) == {t: expected[t] for t in EVENT_TABLES}
    assert stats.dead_lettered == 0
    assert committed(env.settings, env.topics.routed, p.group_id) == \
        end_offsets(env.settings, env.topics.routed)


def _fenced_and_done(env: SinkEnv, p: SinkPipeline, intruded: threading.Event,
                     rejoins: float) -> Callable[[], bool]:
    """Until the sink was fenced, rejoined and committed every offset (at most 120 s)."""
    give_up = time.monotonic() + 120
    state = {"next": 0.0}

    def done() -> bool:
        if time.monotonic() > give_up:
            return True
        if not intruded.is_set() or metric("veille_sink_consumer_rejoins_total") <= rejoins:
            return False
        if time.monotonic() < state["next"]:
            return False
        state["next"] = time.monotonic() + 1.0
        return committed(env.settings, env.topics.routed, p.group_id) == \
            end_offsets(env.settings, env.topics.routed)
    return done
