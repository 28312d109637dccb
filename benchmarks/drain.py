"""Drain rate: intake topics pre-filled, then one consumer process started, timed to the end.

Measured for the router (one worker, then two on the two cores), for the router while one
municipality floods its intake topic with random bytes at full speed (issue 28: the source is
quarantined, everyone is still routed), and for the bare faust agent
(``benchmarks/bare_agent.py``), the framework's ceiling, and for a plain confluent-kafka
consume → produce loop (``benchmarks/plain_loop.py``), what Python itself can move. The rate
is taken from the first
committed offset to the last (the steady drain); the rate from the process start, group join
included, is reported beside it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from benchmarks.kafka_rates import create_topic
from benchmarks.pipeline import Child, Committed, cpu_seconds, hub_env, say
from veille.config import Settings
from veille.schemas.models import Incident
from veille.territory.topics import territory_topic_specs
from veille.topics import MAX_SOURCE_MESSAGE_BYTES, Topics, ensure_topics


@dataclass(frozen=True)
class Drain:
    what: str
    events: int
    steady: float  # events/s from the first commit to the last
    overall: float  # events/s from the process start
    cpu: float  # CPU seconds of the consumer process(es) during the drain


def prefill(settings: Settings, incidents: Sequence[Incident], n: int) -> None:
    """``n`` incidents on their municipalities' intake topics (ids made unique, bytes as published)."""
    topics = Topics(settings.topic_prefix)
    producer = Producer({**settings.kafka_client_config(), "linger.ms": 20, "compression.type": "zstd",
                         "enable.idempotence": True, "acks": "all"})
    payloads = [(topics.intake(i.municipality), i) for i in incidents]
    for k in range(n):
        topic, inc = payloads[k % len(payloads)]
        if k >= len(payloads):
            inc = inc.model_copy(update={"id": uuid.uuid4()})
        while True:
            try:
                producer.produce(topic, key=inc.id.bytes, value=inc.encode())
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise RuntimeError("pre-fill not acknowledged")


def fresh(settings: Settings, label: str) -> Settings:
    s = settings.model_copy(update={"topic_prefix": f"drain{label}{uuid.uuid4().hex[:6]}"})
    ensure_topics(AdminClient(s.kafka_client_config()), territory_topic_specs(s))
    return s


def worker_env(s: Settings, name: str, cache_dir: Path) -> dict[str, str]:
    """A hub process's environment on ``s``, in a state dir of its own (attempt log, instance
    id): the broker's credentials are then not found there, so they are handed over."""
    creds = s.kafka_credentials()
    env = hub_env(s.model_copy(update={"state_dir": s.state_dir / name}))
    env.update({"VEILLE_CACHE_DIR": str(cache_dir), "VEILLE_SECURITY_PROTOCOL": creds.protocol,
                "VEILLE_SASL_USERNAME": creds.username, "VEILLE_SASL_PASSWORD": creds.password})
    return env


def flood(settings: Settings, municipality: str, n: int) -> None:
    """``n`` random-byte messages on one municipality's intake topic, as fast as it goes."""
    producer = Producer({**settings.kafka_client_config(), "linger.ms": 20, "enable.idempotence": True,
                         "batch.size": MAX_SOURCE_MESSAGE_BYTES // 2})
    topic = Topics(settings.topic_prefix).intake(municipality)
    for k in range(n):
        while True:
            try:
                producer.produce(topic, value=os.urandom(40 + k % 360))
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise RuntimeError("flood not acknowledged")


def drain(settings: Settings, incidents: Sequence[Incident], n: int, *, what: str, workers: int = 1,
          garbage: int = 0, timeout: float = 600) -> Drain:
    """``n`` incidents (and ``garbage`` random messages from the first one's municipality)."""
    s = fresh(settings, what.replace(" ", "")[:6])
    say(f"drain ({what}): pre-filling {n:,} incidents on {s.topic_prefix}")
    prefill(s, incidents, n)
    if garbage:
        say(f"drain ({what}): {garbage:,} random messages from {incidents[0].municipality}")
        flood(s, incidents[0].municipality, garbage)
        n += garbage
    group = {"bare agent": f"{s.topic_prefix}-bare", "plain loop": f"{s.topic_prefix}-plain"}.get(
        what, f"{s.topic_prefix}-router")
    if what in ("bare agent", "plain loop"):
        create_topic(s, f"{s.topic_prefix}.bare", s.partitions)
    logs = s.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    topics = Topics(s.topic_prefix)
    committed = Committed(s, group, [topics.intake(m) for m in sorted({i.municipality for i in incidents})])
    children: list[Child] = []
    started = time.monotonic()
    try:
        for w in range(workers):
            env = worker_env(s, f"w{w}", settings.cache_dir)
            if what == "router per event":  # faust's event per record: the path before batches
                env["VEILLE_ROUTER_RECORD_BATCHES"] = "false"
            if what == "bare agent":
                children.append(Child("bare-agent", [], env, logs, module="benchmarks.bare_agent"))
            elif what == "plain loop":
                children.append(Child("plain-loop", [], env, logs, module="benchmarks.plain_loop"))
            else:
                children.append(Child(f"router-{w}", ["router", "run", "--metrics-port", "0"], env, logs))
        first: float | None = None
        first_done = 0
        cpu0 = 0.0
        while time.monotonic() - started < timeout:
            done = committed.total()
            now = time.monotonic()
            if done > 0 and first is None:
                first, first_done = now, done
                cpu0 = sum(cpu_seconds(c.pid) for c in children)
            if done >= n:
                cpu = sum(cpu_seconds(c.pid) for c in children) - cpu0
                assert first is not None
                steady = (n - first_done) / max(now - first, 1e-6)
                return Drain(what, n, steady, n / (now - started), cpu)
            for c in children:
                if c.proc.poll() is not None:
                    raise RuntimeError(f"{c.name} exited {c.proc.returncode}")
            time.sleep(0.25)
        left = committed.total()
        raise TimeoutError(f"{what}: {left:,} of {n:,} committed after {timeout:.0f}s")
    finally:
        for c in children:
            c.stop()
        committed.close()
