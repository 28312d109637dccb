"""Running the hub's processes for real in tests: isolated settings, subprocesses, topic readers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient

from veille.config import Settings
from veille.schemas import codec
from veille.statedir import wait_for_process_info
from veille.territory.topics import territory_topic_specs
from veille.topics import ensure_topics


def hub_settings(base: Settings, state_dir: Path, **updates: Any) -> Settings:
    """A fresh deployment on the session broker: own topic prefix, own state dir, topics created."""
    settings = base.model_copy(update={
        "topic_prefix": f"h{uuid.uuid4().hex[:8]}", "state_dir": state_dir,
        "bootstrap_servers": base.kafka_bootstrap(), **updates})
    ensure_topics(AdminClient(settings.kafka_client_config()), territory_topic_specs(settings))
    return settings


def settings_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    creds = settings.kafka_credentials()  # the child logs in as this settings' Kafka user
    env.update({
        "VEILLE_SECURITY_PROTOCOL": creds.protocol,
        "VEILLE_SASL_USERNAME": creds.username,
        "VEILLE_SASL_PASSWORD": creds.password,
        "VEILLE_TOPIC_PREFIX": settings.topic_prefix,
        "VEILLE_STATE_DIR": str(settings.state_dir),
        "VEILLE_BOOTSTRAP_SERVERS": settings.kafka_bootstrap(),
        "VEILLE_SINK_BATCH_SECONDS": str(settings.sink_batch_seconds),
        "VEILLE_SINK_BATCH_ROWS": str(settings.sink_batch_rows),
        "VEILLE_ROUTER_STALL_SECONDS": str(settings.router_stall_seconds),
        "VEILLE_SCHEMA_REGISTRY_URL": settings.schema_registry_url,
        "VEILLE_FRAMING": settings.framing,
        "VEILLE_REPLICATION_FACTOR": str(settings.replication_factor),
        "VEILLE_MIN_INSYNC_REPLICAS": str(settings.min_insync_replicas),
        "VEILLE_TERRITORY_DIR": str(settings.territory_dir),
        "VEILLE_GROUPING": str(settings.grouping).lower(),
    })
    return env


class HubProcess:
    """One `veille ...` command running as a child process, stopped by its PID."""

    def __init__(self, settings: Settings, *args: str, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.args = args
        self.env = env or {}
        self.log_path = settings.state_dir / f"{args[0]}-{uuid.uuid4().hex[:6]}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> HubProcess:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "veille.cli", *self.args],
                                         env={**settings_env(self.settings), **self.env}, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def info(self, name: str, timeout: float = 60) -> dict[str, Any]:
        """Wait for the JSON file the process writes in the state dir once it serves."""
        assert self.proc is not None
        try:
            return wait_for_process_info(self.settings.state_dir / name, self.proc, timeout)
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError(f"{self.args}: {exc}:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def supervise(self, stop: threading.Event, restarts: list[int]) -> threading.Thread:
        """Restart the command whenever it exits, like compose's ``restart`` or Kubernetes."""

        def loop() -> None:
            while not stop.wait(0.5):
                if self.proc is not None and self.proc.poll() is not None:
                    restarts.append(self.proc.returncode)
                    self.start()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread

    def kill(self) -> None:
        """kill -9: no shutdown hook runs, nothing is flushed or committed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def read_topics(settings: Settings, topics: Iterable[str], *, until: Callable[[list[Any]], bool],
                timeout: float = 60) -> list[tuple[str, Any]]:
    """Decode every message of ``topics`` from the start until ``until(records)`` or timeout."""
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"reader-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(list(topics))
    out: list[tuple[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(out):
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error() is None:
                    out.append((msg.topic(), codec.decode(msg.value())))
    finally:
        consumer.close()
    return out


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.load(resp)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def expected_dispatches(events: Iterable[Any]) -> Counter[tuple[str, str, str]]:
    """(event id, agency, service) of every dispatch the pure routing function asks for."""
    from veille.schemas.models import Alert, Incident
    from veille.territory import load_territory
    from veille.territory.routing import route_alert, route_incident

    territory = load_territory()
    out: Counter[tuple[str, str, str]] = Counter()
    for e in events:
        if isinstance(e, Incident):
            key, decision = str(e.id), route_incident(e, territory)
        elif isinstance(e, Alert):
            key, decision = e.identifier, route_alert(e, territory)
        else:
            continue
        out.update((key, t.agency_id, t.service.value) for t in decision.targets)
    return out


def committed_offsets(settings: Settings, group: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """(topic, partition) -> committed offset of ``group`` (-1: none), read by a consumer that never
    joins the group. Not the admin API: librdkafka 2.16's ListConsumerGroupOffsets crashed the
    calling process (SIGSEGV in rd_kafka_cgrp_op) while a group was forming."""
    from confluent_kafka import TopicPartition

    consumer = Consumer({**settings.kafka_client_config(), "group.id": group, "enable.auto.commit": False})
    try:
        md = consumer.list_topics(timeout=30)
        tps = [TopicPartition(t, p) for t in topics for p in md.topics[t].partitions]
        deadline = time.monotonic() + 60
        while True:
            try:
                return {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(tps, timeout=30)}
            except KafkaException:  # coordinator loading or moving: ask again
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()
