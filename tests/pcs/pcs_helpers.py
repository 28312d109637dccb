"""The router and the PCS worker for real, on the example territory with seconds-long delays."""

from __future__ import annotations

import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer
from hub_helpers import HubProcess, hub_settings

from veille.config import Settings
from veille.pcs import events
from veille.pcs.plan import PCS_FILE
from veille.topics import Topics

ACK_MINUTES = 0.05  # 3 s: a silent representative is replaced within seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def short_plan(tmp: Path) -> Path:
    target = tmp / "territory"
    shutil.copytree(Settings().territory_dir, target)
    plan = yaml.safe_load((target / PCS_FILE).read_text())
    for town in plan["municipalities"].values():
        town["ack_minutes"] = ACK_MINUTES
    (target / PCS_FILE).write_text(yaml.safe_dump(plan, allow_unicode=True))
    return target


def deployment(kafka: Any, tmp: Path) -> Settings:
    return hub_settings(kafka.settings, tmp / "state", territory_dir=short_plan(tmp))


def smtp_env(port: int) -> dict[str, str]:
    return {"VEILLE_DELIVERY_SMTP_HOST": "127.0.0.1", "VEILLE_DELIVERY_SMTP_PORT": str(port),
            "VEILLE_DELIVERY_SMTP_SECURITY": "none"}


def pcs_worker(settings: Settings, port: int) -> HubProcess:
    return HubProcess(settings, "pcs", "worker", "--metrics-port", "0", "--tick-seconds", "0.2",
                      "--log-level", "info", env=smtp_env(port))


def router(settings: Settings) -> HubProcess:
    return HubProcess(settings, "router", "run", "--metrics-port", "0")


def cascade_events(settings: Settings, until: Any, timeout: float = 90) -> list[Any]:
    """Every event of the cascade topic from the start, until ``until(events)`` or timeout."""
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"reader-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([Topics(settings.topic_prefix).pcs_cascade])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(out):
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error() is None:
                    out.append(events.decode(msg.value()))
    finally:
        consumer.close()
    return out


def raw_topic_bytes(settings: Settings, topics: list[str], timeout: float = 10) -> bytes:
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"reader-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(topics)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error() is None:
                    out += (msg.key() or b"") + (msg.value() or b"")
    finally:
        consumer.close()
    return out
