"""Delivery: ``veille deliver run`` pushing dispatches to local bodies (webhook, SMTP, Open311).

Two phases on one broker, the bodies' systems on loopback (``veille/local/demo_delivery.py``):

* **drain**: dispatches pre-filled on the three bodies' topics (real dispatches: the router's
  own ``Router.process`` made them from simulated incidents), then one deliverer started; per
  method, dispatches/s from the first to the last one the body received (the three methods run
  side by side on the two cores, as in production);
* **latency** at a fixed rate: dispatches produced as the router would, each stamped
  ``routed_at`` when produced; p50/p99 of a delivered receipt's ``at`` minus its dispatch's
  ``routed_at`` (read back from ``<prefix>.delivery``).
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from benchmarks.pipeline import Child, hub_env, say
from veille.config import Settings
from veille.kafka import Message
from veille.local.demo_delivery import EMAIL, OPEN311, WEBHOOK, LocalBodies
from veille.producers.simulator import Simulator
from veille.schemas import codec
from veille.streams.router import Router
from veille.territory import load_territory
from veille.territory.topics import territory_topic_specs
from veille.topics import Topics, ensure_topics

BODIES = {WEBHOOK: "webhook", EMAIL: "email", OPEN311: "open311"}


@dataclass(frozen=True)
class DeliveryNumbers:
    rates: dict[str, float]  # method -> dispatches/s in the drain
    counts: dict[str, int]
    p50_ms: float
    p99_ms: float
    samples: int


def router_dispatches(settings: Settings, n: int, seed: int) -> list[tuple[str, bytes, bytes, float]]:
    """Up to ``n`` dispatches per body: (topic, key, value, routed_at epoch s), from the router."""
    territory = load_territory(settings.territory_dir)
    topics = Topics(settings.topic_prefix)
    router = Router(territory, topics, pseudonym_key=b"bench", dispatch_key=b"bench-dispatch")
    sim = Simulator(territory, seed=seed, start=datetime.now(UTC) - timedelta(hours=2))
    wanted = {topics.dispatch(a): 0 for a in BODIES}
    out: list[tuple[str, bytes, bytes, float]] = []
    offset = 0
    while min(wanted.values()) < n and offset < 200 * n:
        inc = sim.incident(municipality=("35401", "35402")[offset % 2],
                           at=datetime.now(UTC) - timedelta(minutes=5))
        offset += 1
        msg = Message(topics.intake(inc.municipality), 0, offset, inc.id.bytes, inc.encode())
        outcome = router.process(msg)
        for o in outcome.outputs:
            if o.topic in wanted and wanted[o.topic] < n:
                wanted[o.topic] += 1
                out.append((o.topic, o.key or b"", o.value, time.time()))
    return out


def produce_dispatches(settings: Settings, items: list[tuple[str, bytes, bytes, float]],
             rate: float | None = None) -> dict[str, float]:
    """Produce; with ``rate``, paced, each re-encoded with routed_at = now. Returns id -> routed_at."""
    producer = Producer({**settings.kafka_client_config(), "linger.ms": 5, "enable.idempotence": True})
    routed: dict[str, float] = {}
    began = time.monotonic()
    for i, (topic, key, value, _) in enumerate(items):
        decoded = codec.decode(value)
        if rate is not None:
            while time.monotonic() < began + i / rate:
                producer.poll(0.001)
            record = {**decoded.value, "routed_at": datetime.now(UTC)}
            value = codec.encode("Dispatch", record)
            decoded = codec.decode(value)
        routed[str(decoded.value["id"])] = decoded.value["routed_at"].timestamp()
        producer.produce(topic, key=key, value=value)
        producer.poll(0)
    producer.flush(60)
    return routed


def bench_delivery(settings: Settings, per_body: int, latency_seconds: float, rate: float,
                   workdir: Path) -> DeliveryNumbers:
    # The broker's credentials are found in the bench's state dir: made explicit, they follow
    # the deliverer into a state dir of its own.
    creds = settings.kafka_credentials()
    explicit = settings.model_copy(update={"security_protocol": creds.protocol,
                                           "sasl_username": creds.username,
                                           "sasl_password": SecretStr(creds.password)})
    with LocalBodies(settings.territory_dir, workdir) as bodies:
        s = explicit.model_copy(update={"topic_prefix": f"deliv{uuid.uuid4().hex[:6]}",
                                        "territory_dir": bodies.target,
                                        "state_dir": workdir / "deliver-state"})
        ensure_topics(AdminClient(s.kafka_client_config()), territory_topic_specs(s))
        say(f"delivery: pre-filling {per_body:,} dispatches for each of {', '.join(BODIES)}")
        items = router_dispatches(s, per_body, seed=31)
        produce_dispatches(s, items)
        env = {**hub_env(s), **bodies.env, "VEILLE_TERRITORY_DIR": str(bodies.target)}
        env.update({"VEILLE_SECURITY_PROTOCOL": creds.protocol, "VEILLE_SASL_USERNAME": creds.username,
                    "VEILLE_SASL_PASSWORD": creds.password})
        logs = workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        child = Child("deliver", ["deliver", "run", "--metrics-port", "0"], env, logs)
        try:
            child.wait_info(s.state_dir / "deliver.json")
            firsts: dict[str, float] = {}
            lasts: dict[str, float] = {}
            counts = {m: 0 for m in BODIES.values()}
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and min(counts.values()) < per_body:
                got = {"webhook": len({str(p["dispatch_id"]) for p in bodies.receiver.received}),
                       "email": len(bodies.mailbox.messages), "open311": len(bodies.geo.posted)}
                now = time.monotonic()
                for method, n in got.items():
                    if n and method not in firsts:
                        firsts[method] = now
                    if n > counts[method]:
                        lasts[method], counts[method] = now, n
                time.sleep(0.05)
            rates = {m: (counts[m] - 1) / max(lasts[m] - firsts[m], 1e-3) if m in firsts else 0.0
                     for m in counts}
            say(f"delivery drain: {counts} in {time.monotonic() - started:.1f}s")
            paced = router_dispatches(s, max(10, int(rate * latency_seconds / len(BODIES))),
                                      seed=32)  # new ids
            say(f"delivery latency: {len(paced)} dispatches at {rate:.0f}/s")
            routed = produce_dispatches(s, paced, rate)
            latencies = _receipt_latencies(s, routed, timeout=120)
        finally:
            child.stop()
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else float("nan")
    return DeliveryNumbers(rates, counts, statistics.median(ms) if ms else float("nan"), p99, len(ms))


def _receipt_latencies(s: Settings, routed: dict[str, float], timeout: float) -> list[float]:
    consumer = Consumer({**s.kafka_client_config(), "group.id": f"bench-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([Topics(s.topic_prefix).delivery])
    first: dict[tuple[str, str], float] = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error():
                    continue
                v = codec.decode(msg.value()).value
                key = (str(v["dispatch_id"]), v["method"])
                # The first delivery by the body's own method (the Kafka receipt is immediate).
                if (v["outcome"] == "delivered" and v["method"] != "kafka" and key[0] in routed
                        and key not in first):
                    first[key] = v["at"].timestamp() - routed[key[0]]
            if len(first) >= len(routed):
                break
    finally:
        consumer.close()
    return [x for x in first.values() if x >= 0]
