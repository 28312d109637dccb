"""Publishing SDK: validate, encode, route and deliver events to the hub, every delivery checked.

Every reporting channel (apps, web forms, phone line, town-hall desk, sensors, agencies)
goes through :class:`Publisher`, so the guarantees are the same everywhere:

* an event is validated by its pydantic model first; an invalid one raises
  :class:`Rejected` listing each ``(field path, reason)`` and never reaches Kafka;
* the producer is idempotent (``enable.idempotence``, ``acks=all``): librdkafka's retries
  cannot duplicate or reorder a message within a partition;
* topic and key follow the hub layout: an incident goes to its municipality's intake topic
  keyed by its id; an alert to the alerts topic keyed by its CAP identifier; a status
  update to the status topic keyed by its *incident* id, so that all the updates of one
  incident stay in order in one partition;
* every delivery report is checked: an acknowledgement is counted (and its id kept),
  a failure (broker unreachable past ``delivery.timeout.ms``...) is recorded and returned
  by :meth:`Publisher.flush`, never silently dropped.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeAlias

from confluent_kafka import KafkaError, KafkaException, Message
from pydantic import ValidationError

from veille import kafka
from veille.config import Settings
from veille.producers import metrics
from veille.producers.refusals import RECORD_FIELD, FieldError, Rejected
from veille.schemas.codec import EncodeError
from veille.schemas.models import Alert, CaseSplit, Channel, Incident, Record, StatusUpdate
from veille.schemas.registry import output_resolver
from veille.topics import MAX_SOURCE_MESSAGE_BYTES, Topics

log = logging.getLogger(__name__)

# Record types a producer may publish; the others are written by the hub itself.
PUBLISHABLE: dict[str, type[Record]] = {"Incident": Incident, "Alert": Alert, "StatusUpdate": StatusUpdate}
DESK_ACTIONS: dict[str, type[Record]] = {"CaseSplit": CaseSplit}  # the desk's own: never by "type"
# Names accepted in a "type" field (files, generic publish) for each publishable record type.
TYPE_ALIASES = {
    "incident": "Incident",
    "alert": "Alert",
    "status": "StatusUpdate",
    "status_update": "StatusUpdate",
    "statusupdate": "StatusUpdate",
}
# Channel label of events that carry none: alerts and status updates come from authorities.
AUTHORITY_CHANNEL = Channel.agency.value
_MAX_LOGGED_FAILURES = 10
_BATCH_POLL_EVERY = 1000

RecordLike: TypeAlias = Record | Mapping[str, Any]
ResultCallback: TypeAlias = Callable[["DeliveryReport"], None]


def resolve_type(name: str | None) -> str:
    """Record type for a "type" value ("incident", "Alert", "status"...); incident when absent."""
    if name is None or name == "":
        return "Incident"
    if name in PUBLISHABLE:
        return name
    resolved = TYPE_ALIASES.get(name.lower())
    if resolved is None:
        raise Rejected(str(name), [FieldError("type", f"unknown event type {name!r}; expected one of "
                                                      "incident, alert, status")], reason="unknown_type")
    return resolved


def validate(record: RecordLike, record_type: str | None = None) -> Record:
    """The validated model of ``record``; a mapping may name its type in a "type" key."""
    if isinstance(record, Record):
        if record.avro_name not in PUBLISHABLE or (record_type and record.avro_name != record_type):
            raise Rejected(record.avro_name, [FieldError(RECORD_FIELD, "not publishable here")],
                           reason="unknown_type")
        return record
    if not isinstance(record, Mapping):
        raise Rejected(record_type or "?", [FieldError(RECORD_FIELD, "expected an object")],
                       reason="not_an_object")
    data: dict[str, Any] = dict(record)
    desk = record_type in DESK_ACTIONS and "type" not in data  # docs/grouping.md: a split
    type_field = data.pop("type", None)
    rtype = str(record_type) if desk else resolve_type(record_type or type_field)
    if type_field and record_type and resolve_type(type_field) != record_type:
        mismatch = FieldError("type", f"{type_field!r} given where {record_type} is expected")
        raise Rejected(record_type, [mismatch], reason="unknown_type")
    try:
        return (DESK_ACTIONS if desk else PUBLISHABLE)[rtype].model_validate(data)
    except ValidationError as exc:
        raise Rejected.from_validation(rtype, exc) from None


def incident_defaults(data: dict[str, Any], channel: Channel | str = Channel.app,
                      now: datetime | None = None) -> dict[str, Any]:
    """What a reporting front-end may leave out: id (new uuid4), reported_at (now), channel."""
    out = dict(data)
    if out.get("id") in (None, ""):
        out["id"] = str(uuid.uuid4())
    if out.get("reported_at") in (None, ""):
        out["reported_at"] = now or datetime.now(UTC)
    if out.get("channel") in (None, ""):
        out["channel"] = str(channel)
    return out


@dataclass(frozen=True)
class Queued:
    """An event accepted by the producer; its fate arrives later in a DeliveryReport."""

    event_id: str
    record_type: str
    topic: str
    key: str
    channel: str


@dataclass(frozen=True)
class DeliveryReport:
    event_id: str
    record_type: str
    topic: str
    partition: int | None
    offset: int | None
    error: str | None  # "<librdkafka error name>: <message>" when not acknowledged
    latency: float | None  # seconds from produce() to acknowledgement

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class DeliverySummary:
    acknowledged: int
    failed: list[tuple[str, str]]  # (event id, error)
    pending: int = 0  # still in the producer's queue when flush() timed out
    published: dict[tuple[str, str], int] = field(default_factory=dict)  # (type, channel) -> n
    acknowledged_by: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.pending


@dataclass
class BatchOutcome:
    queued: int
    rejected: list[tuple[int, Rejected]]  # (index in the input, why)


def publisher_config(settings: Settings, client_id: str, compression: str = "zstd") -> dict[str, Any]:
    """librdkafka settings of every publisher (idempotent, see :mod:`veille.kafka`).

    zstd is the default codec: on the hub's ~170-byte Avro incidents it sends ~15 % fewer
    bytes than lz4 (~125 vs ~148 bytes/event, 224 uncompressed) and its CPU cost is lost in
    the noise next to the Python encoding (benchmarks/bench_produce.py).
    """
    return kafka.producer_config(settings, **{
        "client.id": client_id,
        "compression.type": compression,
        # Source topics refuse record batches over MAX_SOURCE_MESSAGE_BYTES (veille.topics), and
        # librdkafka does not split a refused batch: keep every batch (and message) below it.
        "message.max.bytes": MAX_SOURCE_MESSAGE_BYTES,
        "batch.size": MAX_SOURCE_MESSAGE_BYTES // 2,
    })


class Publisher:
    """Idempotent Kafka producer of hub events. Use as a context manager, or call close()."""

    def __init__(self, settings: Settings, client_id: str = "veille-producer", *,
                 compression: str = "zstd", known_municipalities: Collection[str] | None = None,
                 known_agencies: Collection[str] | None = None, track_ids: bool = True,
                 extra_config: Mapping[str, Any] | None = None) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self._config = {**publisher_config(settings, client_id, compression), **(extra_config or {})}
        self._producer = kafka.new_producer(self._config)
        # VEILLE_FRAMING=confluent: values framed with the registry's schema id (looked up once
        # per topic, so a publish may raise RegistryUnavailable while it is down; retriable).
        self._framer = output_resolver(settings)
        # Without a territory, any INSEE code is accepted (its topic must exist, or the
        # delivery fails after delivery.timeout.ms since the broker never auto-creates topics).
        self._municipalities = frozenset(known_municipalities) if known_municipalities else None
        self._agencies = frozenset(known_agencies) if known_agencies else None
        self._track_ids = track_ids
        self._lock = threading.Lock()  # delivery callbacks may run on the poller thread
        self._acknowledged = 0
        self._acknowledged_ids: list[str] = []
        self._failed: list[tuple[str, str]] = []
        self._published: Counter[tuple[str, str]] = Counter()
        self._acknowledged_by: Counter[tuple[str, str]] = Counter()
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False

    # ------------------------------------------------------------------ introspection

    @property
    def config(self) -> dict[str, Any]:
        """The producer's librdkafka configuration, secrets redacted."""
        return {k: ("***" if "password" in k else v) for k, v in self._config.items()
                if not callable(v)}

    @property
    def acknowledged_ids(self) -> list[str]:
        """Ids of the events the broker acknowledged, in acknowledgement order."""
        with self._lock:
            return list(self._acknowledged_ids)

    def __len__(self) -> int:
        """Messages waiting in the producer's queue (not yet acknowledged nor failed)."""
        return 0 if self._closed else len(self._producer)

    # ------------------------------------------------------------------ publishing

    def publish_incident(self, incident: Incident | Mapping[str, Any],
                         on_result: ResultCallback | None = None) -> Queued:
        return self.publish(incident, record_type="Incident", on_result=on_result)

    def publish_alert(self, alert: Alert | Mapping[str, Any],
                      on_result: ResultCallback | None = None) -> Queued:
        return self.publish(alert, record_type="Alert", on_result=on_result)

    def publish_status(self, update: StatusUpdate | Mapping[str, Any],
                       on_result: ResultCallback | None = None) -> Queued:
        return self.publish(update, record_type="StatusUpdate", on_result=on_result)

    def publish(self, record: RecordLike, *, record_type: str | None = None,
                on_result: ResultCallback | None = None) -> Queued:
        """Validate, encode and queue one event; raises :class:`Rejected` if it is invalid.

        ``on_result`` is called with the DeliveryReport from the thread serving delivery
        reports (poll/flush or the background poller).
        """
        try:
            model = validate(record, record_type)
            queued, value = self._prepare(model)
        except Rejected as exc:
            metrics.REJECTED.labels(exc.record_type, exc.reason).inc()
            raise
        self._produce(queued, value, on_result)
        return queued

    def publish_many(self, records: Iterable[RecordLike], *, record_type: str | None = None) -> BatchOutcome:
        """Throughput path: queue many events, serving delivery reports as it goes.

        Invalid events are skipped and returned with their index; deliveries are checked
        as usual and summarised by :meth:`flush`.
        """
        queued = 0
        rejected: list[tuple[int, Rejected]] = []
        for index, record in enumerate(records):
            try:
                model = validate(record, record_type)
                q, value = self._prepare(model)
            except Rejected as exc:
                metrics.REJECTED.labels(exc.record_type, exc.reason).inc()
                rejected.append((index, exc))
                continue
            self._produce(q, value, None)
            queued += 1
            if queued % _BATCH_POLL_EVERY == 0:
                self._producer.poll(0)
        self._producer.poll(0)
        return BatchOutcome(queued, rejected)

    def _prepare(self, model: Record) -> tuple[Queued, bytes]:
        if isinstance(model, Incident):
            if self._municipalities is not None and model.municipality not in self._municipalities:
                raise Rejected("Incident", [FieldError(
                    "municipality", f"{model.municipality} is not a municipality of this hub's territory")],
                    reason="unknown_municipality")
            event_id = str(model.id)
            queued = Queued(event_id, "Incident", self.topics.intake(model.municipality), event_id,
                            model.channel.value)
        elif isinstance(model, Alert):
            queued = Queued(model.identifier, "Alert", self.topics.alerts, model.identifier,
                            AUTHORITY_CHANNEL)
        elif isinstance(model, StatusUpdate):
            if self._agencies is not None and model.agency_id not in self._agencies:
                raise Rejected("StatusUpdate", [FieldError(
                    "agency_id", f"{model.agency_id} is not an agency of this hub's territory")],
                    reason="unknown_agency")
            if model.dispatch_id is None:  # the router would refuse it (not_dispatched): say so now
                raise Rejected("StatusUpdate", [FieldError("dispatch_id", "required: the id of the "
                                                           "dispatch this update answers")], "validation")
            queued = Queued(str(model.id), "StatusUpdate", self.topics.status, str(model.incident_id),
                            AUTHORITY_CHANNEL)
        elif isinstance(model, CaseSplit):  # the router checks it and forwards it (docs/grouping.md)
            queued = Queued(str(model.id), "CaseSplit", self.topics.status, str(model.incident_id),
                            AUTHORITY_CHANNEL)
        else:  # validate() only returns publishable models
            raise Rejected(model.avro_name, [FieldError(RECORD_FIELD, "not publishable")], "unknown_type")
        try:
            if self._framer is None:
                value = model.encode()
            else:
                value = self._framer.encode(queued.topic, model.avro_name, model.to_avro())
        except EncodeError as exc:
            raise Rejected(queued.record_type, [FieldError(RECORD_FIELD, str(exc))], reason="encode") from exc
        return queued, value

    def _produce(self, q: Queued, value: bytes, on_result: ResultCallback | None) -> None:
        callback = functools.partial(self._on_delivery, q, on_result)
        try:
            kafka.produce(self._producer, q.topic, q.key.encode(), value, callback)
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                metrics.REJECTED.labels(q.record_type, "too_large").inc()
                raise Rejected(q.record_type, [FieldError(RECORD_FIELD, err.str())],
                               reason="too_large") from exc
            raise
        with self._lock:
            self._published[(q.record_type, q.channel)] += 1
        metrics.published(q.record_type, q.channel).inc()

    def _on_delivery(self, q: Queued, on_result: ResultCallback | None,
                     err: KafkaError | None, msg: Message) -> None:
        if err is None:
            latency = msg.latency()
            with self._lock:
                self._acknowledged += 1
                self._acknowledged_by[(q.record_type, q.channel)] += 1
                if self._track_ids:
                    self._acknowledged_ids.append(q.event_id)
            metrics.acknowledged(q.record_type).inc()
            if latency is not None:
                metrics.delivery_seconds(q.record_type).observe(latency)
            if on_result is None:  # publish_many: the summary says it all, no report per event
                return
            report = DeliveryReport(q.event_id, q.record_type, q.topic, msg.partition(), msg.offset(),
                                    None, latency)
        else:
            error = f"{err.name()}: {err.str()}"
            with self._lock:
                self._failed.append((q.event_id, error))
                n_failed = len(self._failed)
            metrics.DELIVERY_FAILED.labels(q.record_type, err.name()).inc()
            if n_failed <= _MAX_LOGGED_FAILURES:
                log.warning("delivery of %s %s to %s failed: %s", q.record_type, q.event_id, q.topic, error)
            report = DeliveryReport(q.event_id, q.record_type, q.topic, None, None, error, None)
        if on_result is not None:
            try:
                on_result(report)
            except Exception:  # a caller's bug must not break the delivery loop of others
                log.exception("delivery result callback failed for %s", q.event_id)

    # ------------------------------------------------------------------ delivery reports

    def poll(self, timeout: float = 0) -> int:
        """Serve delivery reports; returns how many were served."""
        return int(self._producer.poll(timeout))

    def start_polling(self, interval: float = 0.1) -> None:
        """Serve delivery reports from a daemon thread (servers that never call poll())."""
        if self._poller is not None:
            return

        def loop() -> None:
            while not self._stop.is_set():
                self._producer.poll(interval)

        self._poller = threading.Thread(target=loop, name="veille-producer-poll", daemon=True)
        self._poller.start()

    def summary(self) -> DeliverySummary:
        with self._lock:
            return DeliverySummary(self._acknowledged, list(self._failed), len(self),
                                   dict(self._published), dict(self._acknowledged_by))

    def flush(self, timeout: float | None = None) -> DeliverySummary:
        """Wait for every queued delivery report (at most ``timeout`` s); cumulative summary.

        With the default timeout (delivery.timeout.ms + margin) nothing stays pending:
        every event ends up acknowledged or failed.
        """
        if self._closed:
            return self.summary()
        if timeout is None:
            timeout = self.settings.delivery_timeout_ms / 1000 + 5
        self._producer.flush(timeout)
        summary = self.summary()
        if summary.failed:
            log.error("%d deliveries failed (first: %s %s)", len(summary.failed), *summary.failed[0])
        return summary

    def close(self, timeout: float | None = None) -> DeliverySummary:
        if self._poller is not None:
            self._stop.set()
            self._poller.join()
            self._poller = None
        if self._closed:
            return self.summary()
        summary = self.flush(timeout)
        # Release librdkafka's handle now: left to the garbage collector, it outlived the
        # broker in the tests and kept reconnecting (errors printed after the session).
        self._producer.close()
        self._closed = True
        return summary

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
