"""Static membership (veille/kafka.py, streams/membership.py) and the router's stall watchdog, no Kafka."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from veille.config import Settings
from veille.consumer import Fenced, check_error
from veille.kafka import sink_consumer_settings
from veille.streams.membership import (
    Progress,
    check_stall_window,
    faust_consumer_settings,
    instance_id,
    rejoin_seconds,
    stall_reason,
)

TP = ("veille.intake.35401", 0)
OTHER = ("veille.intake.35402", 1)


def test_instance_id_is_stable_per_worker_and_overridable(tmp_path: Path) -> None:
    a = Settings(state_dir=tmp_path / "a", topic_prefix="vx")
    assert instance_id(a) == instance_id(Settings(state_dir=tmp_path / "a", topic_prefix="vx"))
    assert instance_id(a).startswith("vx-router-")
    assert instance_id(a) != instance_id(Settings(state_dir=tmp_path / "b", topic_prefix="vx"))
    assert instance_id(a) != instance_id(Settings(state_dir=tmp_path / "a", topic_prefix="vy"))
    assert instance_id(a.model_copy(update={"router_instance_id": "router-0"})) == "router-0"


def test_sink_is_a_static_member_too(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, topic_prefix="vx")
    conf = sink_consumer_settings(settings, "vx.sink")
    assert conf == sink_consumer_settings(Settings(state_dir=tmp_path, topic_prefix="vx"), "vx.sink")
    assert conf["group.instance.id"].startswith("vx-sink.vx.sink-")
    assert conf["group.instance.id"] != sink_consumer_settings(settings, "other")["group.instance.id"]
    assert conf["session.timeout.ms"] == 20_000 and conf["heartbeat.interval.ms"] * 3 <= 20_000
    pinned = settings.model_copy(update={"sink_instance_id": "sink-0"})
    assert sink_consumer_settings(pinned, "vx.sink")["group.instance.id"] == "sink-0"


def test_faust_timeouts_are_consistent() -> None:
    for session in (6.0, 20.0, 120.0):
        conf = faust_consumer_settings(Settings(router_session_seconds=session))
        assert conf["broker_request_timeout"] > conf["broker_session_timeout"] == session
        assert conf["broker_heartbeat_interval"] * 3 <= session
        assert conf["consumer_group_instance_id"]


def test_stall_window_shorter_than_a_rejoin_is_refused() -> None:
    assert check_stall_window(Settings(router_stall_seconds=30)) is None  # the test suite's value
    assert check_stall_window(Settings()) is None
    assert rejoin_seconds(Settings()) == 30
    problem = check_stall_window(Settings(router_stall_seconds=29))
    assert problem and "VEILLE_ROUTER_STALL_SECONDS=29" in problem and "30" in problem
    assert check_stall_window(Settings(router_stall_seconds=20, router_session_seconds=10)) is None
    assert check_stall_window(Settings(router_session_seconds=3)) is not None


def test_router_run_refuses_a_too_short_stall_window(tmp_path: Path) -> None:
    env = {**os.environ, "VEILLE_STATE_DIR": str(tmp_path), "VEILLE_ROUTER_STALL_SECONDS": "12",
           "VEILLE_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    proc = subprocess.run([sys.executable, "-m", "veille.cli", "router", "run"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "refusing to start" in proc.stderr and "VEILLE_ROUTER_STALL_SECONDS=12" in proc.stderr
    assert not (tmp_path / "router.json").exists()


def test_watchdog_never_fires_while_joining_or_rebalancing() -> None:
    p = Progress(last=0.0, joining_since=0.0)
    lags = {TP: 500}
    assert stall_reason(p, lags, 30, join_limit=110, now=100) is None  # joining, within the limit
    reason = stall_reason(p, lags, 30, join_limit=110, now=120)
    assert reason and "joining" in reason  # a join that never ends, with a backlog
    assert stall_reason(p, {}, 30, join_limit=110, now=1000) is None  # nothing waiting
    p.assigned_to({TP})
    p.revoked()  # a rebalance starts: the join clock restarts
    _, _, since = p.snapshot()
    assert stall_reason(p, lags, 30, join_limit=110, now=since + 100) is None


def test_watchdog_counts_idle_time_only_on_assigned_partitions() -> None:
    p = Progress()
    p.assigned_to({TP})
    assigned_at, _, _ = p.snapshot()
    assert stall_reason(p, {TP: 10}, 30, 110, now=assigned_at + 29) is None
    # Another worker's backlog is not this worker's stall.
    assert stall_reason(p, {OTHER: 10, TP: 0}, 30, 110, now=assigned_at + 100) is None
    reason = stall_reason(p, {TP: 10, OTHER: 5}, 30, 110, now=assigned_at + 31)
    assert reason and "10 messages" in reason
    p.batch_done()
    done, _, _ = p.snapshot()
    assert stall_reason(p, {TP: 10}, 30, 110, now=done + 5) is None


@pytest.mark.parametrize("stall", ["30", "45"])
def test_valid_stall_windows_pass_the_start_check(stall: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEILLE_ROUTER_STALL_SECONDS", stall)
    assert check_stall_window(Settings()) is None


def test_consumers_tell_a_fenced_static_member_from_other_fatal_errors() -> None:
    """librdkafka reports a fenced static member as a _FATAL event whose fatal() is False: the
    consumer runtime replaces its consumer (``Fenced``, handled by ``StreamRunner.run``:
    tests/sinks/test_sink_pipeline.py fences the sink's); any other fatal error still stops it."""
    fenced = KafkaError(KafkaError._FATAL, "Fatal error: Broker: Static consumer fenced")
    assert not fenced.fatal()
    with pytest.raises(Fenced):
        check_error(fenced)
    with pytest.raises(KafkaException):
        check_error(KafkaError(KafkaError._FATAL, "Fatal error: other"))
    check_error(KafkaError(KafkaError._TRANSPORT, "down"))  # logged
