"""The hub's one edge to Kafka's clients (confluent-kafka): every component goes through it.

* **Configuration**: every producer is idempotent with ``acks=all`` (librdkafka leaves
  idempotence off by default; with it on, retries after a lost acknowledgement cannot
  duplicate or reorder messages within a partition); ``delivery.timeout.ms`` bounds how long
  a message may wait for the broker before its delivery report says it failed. Each
  component adds what is its own (client id, compression, size caps).
* **Static membership** (``group.instance.id``, :func:`static_member_id`): a consumer killed
  by ``kill -9`` never sends a LeaveGroup; with a dynamic member id its successor waits for
  the dead member's session timeout before getting any partition, with a stable one the
  coordinator hands it the partitions at once. The router's use of it (with its stall
  watchdog) is in ``veille.streams.membership``, the sink's is :func:`sink_consumer_settings`.
* **Produce and confirm**: ``produce`` waits for room when librdkafka's local queue is full;
  :func:`produce_and_confirm` sends a set of messages and returns what Kafka said of each,
  errors sorted by cause, because they call for opposite answers:
  *permanent* (the message itself is refused: too large, invalid record; sending it again
  fails again) and *transient* (the broker is away, a leader moves, a timeout: send again).
* **The message type** consumers hand to their pure logic (:class:`Message`) and the one
  producers send (:class:`Output`), so the logic is tested without a broker.
* **Consumer lag** read from committed offsets and watermarks (:class:`CommittedLag`).
  Never through the admin client's ListConsumerGroupOffsets: librdkafka 2.16 aborted the
  process there (``rd_kafka_enq_once_del_source_return: Assertion `eonce->refcnt > 0'
  failed``) when requests timed out during broker restarts, or while a group was forming.
"""

from __future__ import annotations

import hashlib
import socket
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka import Message as KafkaMessage

from veille.config import Settings

# Refusals that depend only on the message: retrying cannot succeed.
PERMANENT_ERRORS = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE, KafkaError.INVALID_RECORD,
    KafkaError.RECORD_LIST_TOO_LARGE, KafkaError._INVALID_ARG,
})
_QUEUE_FULL_WAIT = 0.05  # seconds of delivery reports served before producing again

Lag = dict[tuple[str, int], int]  # (topic, partition) -> messages not yet committed


@dataclass(frozen=True)
class Message:
    """What the hub's consumers need of a Kafka message (tests build these without a broker)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @classmethod
    def of(cls, msg: KafkaMessage) -> Message:
        return cls(msg.topic() or "", msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value())


@dataclass(frozen=True)
class Output:
    """A message to produce."""

    topic: str
    key: bytes | None
    value: bytes


# --------------------------------------------------------------------------- configuration


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """librdkafka settings of every hub producer; ``overrides`` are librdkafka keys (dots
    written as given, e.g. ``**{"client.id": ...}``)."""
    return {
        **settings.kafka_client_config(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": settings.linger_ms,
        "delivery.timeout.ms": settings.delivery_timeout_ms,
        **overrides,
    }


def consumer_config(settings: Settings, group_id: str) -> dict[str, Any]:
    """A consumer that commits by hand, only what its component made durable."""
    return {
        **settings.kafka_client_config(),
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
    }


def static_member_id(settings: Settings, component: str) -> str:
    """``<prefix>-<component>-<host>-<hash of the state dir>``: a stable group.instance.id.

    Stable across restarts of the same worker (same host, same state dir), distinct for two
    workers on one host with different state dirs. Replicas sharing a host name and a state
    dir must set their instance id explicitly: two live members with one id fence each other.
    """
    digest = hashlib.sha256(str(settings.state_dir.resolve()).encode()).hexdigest()[:8]
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())[:64]
    return f"{settings.topic_prefix}-{component}-{host}-{digest}"


def sink_consumer_settings(settings: Settings, group_id: str) -> dict[str, Any]:
    """librdkafka settings of the sink's static membership (``veille sink run``).

    Without them a sink killed with ``kill -9`` leaves a member that its successor waits
    for until librdkafka's 45 s session timeout expires (measured by ``make chaos``).
    """
    member = settings.sink_instance_id or static_member_id(settings, f"sink.{group_id}")
    return {"group.instance.id": member,
            "session.timeout.ms": int(settings.sink_session_seconds * 1000),
            "heartbeat.interval.ms": int(max(1.0, min(3.0, settings.sink_session_seconds / 5)) * 1000)}


def new_producer(config: Mapping[str, Any]) -> Producer:
    """The one place the hub constructs a producer (from :func:`producer_config`)."""
    return Producer(dict(config))


# --------------------------------------------------------------------------- produce and confirm

DeliveryCallback = Callable[[KafkaError | None, KafkaMessage], None]


def produce(producer: Producer, topic: str, key: bytes | None, value: bytes | None,
            on_delivery: DeliveryCallback, partition: int | None = None) -> None:
    """Queue one message (``value`` None: a tombstone; ``partition`` None: the partitioner's),
    serving delivery reports while the local queue is full.

    Raises ``KafkaException`` when librdkafka refuses the message outright (too large...).
    """
    while True:
        try:
            if partition is None:
                producer.produce(topic, value, key, on_delivery=on_delivery)
            else:
                producer.produce(topic, value, key, partition, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(_QUEUE_FULL_WAIT)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition every hub producer (librdkafka's default ``consistent_random``
    partitioner: CRC-32 of the key) gives a non-empty key. Co-partitioned topics (the routed
    topic and the notifier's changelog) rely on it; tests check it against the broker."""
    return zlib.crc32(key) % partitions


def is_permanent(err: KafkaError) -> bool:
    return err.code() in PERMANENT_ERRORS


@dataclass
class Confirmation:
    """What Kafka said of messages produced together, by owner (the caller's index of the
    message each output comes from)."""

    permanent: dict[int, str] = field(default_factory=dict)  # owner -> first refusal
    transient: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.permanent and not self.transient


def produce_and_confirm(producer: Producer, outputs: Iterable[tuple[int, Output]],
                        timeout: float) -> Confirmation:
    """Blocking: produce every (owner, output) and wait for every delivery report.

    An owner refused for good is not produced further; outputs still unacknowledged after
    ``timeout`` seconds count as transient failures.
    """
    result = Confirmation()

    def reporter(owner: int) -> DeliveryCallback:
        def report(err: KafkaError | None, _msg: KafkaMessage) -> None:
            if err is None:
                return
            if is_permanent(err):
                result.permanent.setdefault(owner, str(err))
            else:
                result.transient.append(str(err))
        return report

    reports: dict[int, DeliveryCallback] = {}  # one callback per owner, shared by its outputs
    for owner, o in outputs:
        if owner in result.permanent:
            continue
        report = reports.get(owner)
        if report is None:
            report = reports[owner] = reporter(owner)
        try:
            produce(producer, o.topic, o.key, o.value, report)
        except KafkaException as exc:
            err = exc.args[0]
            if isinstance(err, KafkaError) and not is_permanent(err):
                result.transient.append(str(err))
            else:
                result.permanent.setdefault(owner, str(err))
    left = producer.flush(timeout)
    if left:
        result.transient.append(f"{left} outputs not acknowledged within {timeout:.0f}s")
    return result


# --------------------------------------------------------------------------- consumer lag


def committed_lag(consumer: Consumer, partitions: Sequence[TopicPartition], timeout: float,
                  fetching: bool = False) -> Lag:
    """End offsets minus the group's *committed* offsets, asked of the broker: while a
    component cannot make progress nothing is committed, so its backlog shows (the
    consumer's own position would not). Raises ``KafkaException``.

    ``fetching``: the consumer is fetching these partitions, so the end offsets its fetch
    responses carry are fresh: they are used, and the broker asked only for those not known
    yet. Asking it costs a round trip queued behind the connection's fetch long-poll (up to
    ``fetch.wait.max.ms``, 500 ms) per partition; a paused consumer has none in flight."""
    out: Lag = {}
    for tp in consumer.committed(list(partitions), timeout=timeout):
        low, high = consumer.get_watermark_offsets(tp, cached=True) if fetching else (-1, -1)
        if high < 0 or (tp.offset < 0 and low < 0):
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
        out[(tp.topic, tp.partition)] = max(0, high - (tp.offset if tp.offset >= 0 else low))
    return out


class CommittedLag:
    """Lag of ``group`` on ``topics`` read with a plain consumer that never joins the group
    (the router's stall watchdog, the demo's wait for the hub to catch up)."""

    def __init__(self, conf: dict[str, str | int | float | bool], group: str, topics: list[str]) -> None:
        self.topics = topics
        self.consumer = Consumer({**conf, "group.id": group, "enable.auto.commit": False,
                                  "log_level": 0, "error_cb": lambda _err: None})

    def lag(self, timeout: float = 10.0) -> Lag:
        md = self.consumer.list_topics(timeout=timeout)
        tps = [TopicPartition(t, p) for t in self.topics if t in md.topics
               for p in md.topics[t].partitions]
        return committed_lag(self.consumer, tps, timeout)

    def close(self) -> None:
        self.consumer.close()


__all__ = [
    "PERMANENT_ERRORS",
    "CommittedLag",
    "Confirmation",
    "Lag",
    "Message",
    "Output",
    "committed_lag",
    "consumer_config",
    "is_permanent",
    "new_producer",
    "partition_for",
    "produce",
    "produce_and_confirm",
    "producer_config",
]
