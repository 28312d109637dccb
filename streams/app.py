"""The router as a faust-streaming app: its topics and its one agent.

Guarantee (dispatches and routing records): at-least-once. Events are taken in
batches with ``noack_take``; outputs of a batch are sent and *awaited* (Kafka
acknowledged them, acks=all) before any event of the batch is acked, so faust can only
commit offsets of events whose outputs are durable. A crash in between re-delivers the
batch: dispatch ids are deterministic (uuid5 of event, agency, service) for agencies to
deduplicate on, and the store deduplicates incidents by id.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterator, MutableMapping
from typing import Any, cast

import faust
from confluent_kafka import KafkaError, Producer
from faust.types import StreamT

from veille.config import Settings
from veille.deadletter import DeadLetterLimit, TooManyInvalid
from veille.streams import metrics
from veille.streams.router import Message, Outcome, Output, Router
from veille.territory import load_territory
from veille.topics import Topics

log = logging.getLogger("veille.router")

BATCH_MAX = 1000
BATCH_WITHIN = 0.05  # seconds: bounds the latency a quiet stream adds
SEND_BACKOFF_MAX = 10.0
EXIT_TOO_MANY_INVALID = 3
DEDUP_CAPACITY = 1_000_000  # ids remembered (~200 MB at most); the window is DEDUP_WINDOW


def create_app(settings: Settings) -> faust.App:
    topics = Topics(settings.topic_prefix)
    territory = load_territory(settings.territory_dir)
    app = faust.App(
        f"{settings.topic_prefix}-router",
        broker=f"kafka://{settings.kafka_bootstrap()}",
        broker_credentials=_credentials(settings),
        datadir=str(settings.state_dir / "router"),
        store="memory://",  # the table is rebuilt from its changelog topic at start
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,  # /metrics is served by prometheus-client (see cli)
        broker_commit_interval=1.0,
    )
    sources = app.topic(
        *[topics.intake(m) for m in sorted(territory.municipalities)],
        topics.alerts, topics.status, key_type=bytes, value_type=bytes,
    )
    # Event id -> [content digest, first seen (epoch s)]: drops re-sent events, flags
    # re-used ids. In process memory, bounded: a faust Table (changelog topic) was tried and
    # removed: routers restarted mid-stream then intermittently never resumed (recovery of the
    # table stalled with a backlog, seen in CI). A restart therefore forgets the window; a
    # re-sent event may then be routed twice, which at-least-once already allows (dispatch
    # ids are deterministic, the store deduplicates by id).
    seen = SeenWindow(DEDUP_CAPACITY)
    router = Router(territory, topics, pseudonym_key=settings.pseudonym_key.get_secret_value().encode())
    sender = OutputSender(settings)
    limit = DeadLetterLimit()

    @app.agent(sources, name="route")
    async def route(stream_t: StreamT[Any]) -> None:
        stream = cast(faust.Stream[Any], stream_t)  # noack_take lives on the concrete class
        async for events in stream.noack_take(BATCH_MAX, within=BATCH_WITHIN):
            started = time.perf_counter()
            outputs: list[Output] = []
            memo = SeenAfterDelivery(seen)
            for event in events:
                m = event.message
                memo.event = event
                t0 = time.perf_counter()
                outcome = router.process(Message(m.topic, m.partition, m.offset, m.key, m.value), memo)
                metrics.ROUTING_SECONDS.observe(time.perf_counter() - t0)
                _count(outcome, m.topic, topics)
                try:
                    limit.record(outcome.kind == "dead_letter")
                except TooManyInvalid as exc:
                    # Nothing of this batch is sent nor acked: its offsets stay uncommitted.
                    log.critical("stopping the router: %s (last: %s on %s)", exc, outcome.reason, m.topic)
                    metrics.STOPPED_INVALID.inc()
                    os._exit(EXIT_TOO_MANY_INVALID)
                outputs.extend(outcome.outputs)
            await _send_all(sender, outputs)
            # Only now is an event "seen": had we recorded it before its outputs were
            # durable, a crash in between would make the re-delivery look like a duplicate.
            for _event, key, value in memo.pending:
                seen[key] = value
            for event in events:
                await stream.ack(event)
            metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
            metrics.LAST_PROGRESS[0] = time.monotonic()

    return app


class SeenWindow(OrderedDict[str, Any]):
    """Recently routed ids, oldest evicted first beyond ``capacity``."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        if len(self) > self.capacity:
            self.popitem(last=False)


class SeenAfterDelivery(MutableMapping[str, Any]):
    """The dedup table as the router sees it during one batch: reads fall through to the
    table, writes stay pending until the batch's outputs are acknowledged."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.local: dict[str, Any] = {}
        self.pending: list[tuple[Any, str, Any]] = []
        self.event: Any = None

    def __getitem__(self, key: str) -> Any:
        if key in self.local:
            return self.local[key]
        value = self.table.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self.local[key] = value
        self.pending.append((self.event, key, value))

    def __delitem__(self, key: str) -> None:
        raise NotImplementedError("the router never forgets an id within the window")

    def __iter__(self) -> Iterator[str]:
        return iter(self.local)

    def __len__(self) -> int:
        return len(self.local)


class OutputSender:
    """Dispatches, routing records and dead letters go out through librdkafka.

    aiokafka sends one awaited future per message (~190 µs each, measured); an idempotent
    confluent-kafka producer batches them and reports every delivery, so a whole batch of
    outputs costs a few milliseconds. The faust producer is left with the table changelog.
    """

    def __init__(self, settings: Settings, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.producer = Producer({
            **settings.kafka_client_config(),
            "client.id": f"{settings.topic_prefix}-router",
            "enable.idempotence": True,  # librdkafka leaves it off by default
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "zstd",
            "delivery.timeout.ms": int(timeout * 1000),
        })

    def send(self, outputs: list[Output]) -> list[str]:
        """Blocking: produce every output and wait for its report. Returns the errors."""
        errors: list[str] = []

        def report(err: KafkaError | None, _msg: object) -> None:
            if err is not None:
                errors.append(str(err))

        for o in outputs:
            while True:
                try:
                    self.producer.produce(o.topic, key=o.key, value=o.value, on_delivery=report)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    self.producer.poll(0.05)
        left = self.producer.flush(self.timeout)
        if left:
            errors.append(f"{left} outputs not acknowledged within {self.timeout:.0f}s")
        return errors


async def _send_all(sender: OutputSender, outputs: list[Output]) -> None:
    """Send every output and wait for Kafka's acks; retry the whole batch until it takes it.

    Blocking here (rather than acking and moving on) is what keeps a broker outage from
    losing events: nothing is acked, so nothing is committed, and lag shows the backlog.
    Re-sent outputs are duplicates agencies and the store absorb (deterministic ids).
    """
    loop = asyncio.get_running_loop()
    backoff = 0.2
    while True:
        errors = await loop.run_in_executor(None, sender.send, outputs)
        if not errors:
            return
        metrics.SEND_RETRIES.inc()
        log.warning("%d of %d outputs failed (%s); retrying in %.1fs",
                    len(errors), len(outputs), errors[0], backoff)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, SEND_BACKOFF_MAX)


def _count(outcome: Outcome, topic: str, topics: Topics) -> None:
    source = "intake" if topics.municipality_of_intake(topic) else topic.rsplit(".", 1)[-1]
    metrics.EVENTS.labels(source, outcome.kind).inc()
    for target in outcome.targets:
        metrics.ROUTED.labels(target.agency_id, target.service.value).inc()
        if target.cross_boundary:
            metrics.CROSS_BOUNDARY.labels(target.service.value).inc()
    if outcome.reported_at is not None:
        metrics.PIPELINE_SECONDS.observe(max(0.0, time.time() - outcome.reported_at.timestamp()))
    if outcome.kind == "dead_letter":
        metrics.DEAD_LETTERED.labels(outcome.reason or "unknown").inc()
        if outcome.reason == "unroutable":
            metrics.UNROUTABLE.inc()
    elif outcome.kind == "duplicate":
        metrics.DUPLICATES.inc()


def _credentials(settings: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    # Same resolution as the confluent-kafka clients (Settings.kafka_credentials).
    creds = settings.kafka_credentials()
    tls = None
    if creds.protocol in ("SSL", "SASL_SSL"):
        import ssl

        tls = ssl.create_default_context(cafile=settings.ssl_ca_location or None)
    if not creds.mechanism:
        return faust.SSLCredentials(tls) if tls is not None else None
    return faust.SASLCredentials(
        username=creds.username, password=creds.password, mechanism=creds.mechanism, ssl_context=tls,
    )
