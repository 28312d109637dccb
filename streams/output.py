"""The router's one Kafka producer: produce a batch of outputs and wait for every report.

aiokafka sends one awaited future per message (~190 µs each, measured); an idempotent
confluent-kafka producer batches them and reports every delivery, so a whole batch of
outputs costs a few milliseconds.

Errors are sorted by cause, because they call for opposite answers:
* *permanent* — the output itself is refused (too large, invalid record): sending it again
  fails again, so the message that produced it is dead-lettered instead;
* *transient* — the broker is away, a leader moves, a timeout: the batch is sent again
  until Kafka takes it, and nothing is acked meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from veille.config import Settings
from veille.streams.router import Output

# Refusals that depend only on the message: retrying cannot succeed.
PERMANENT_ERRORS = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE, KafkaError.INVALID_RECORD,
    KafkaError.RECORD_LIST_TOO_LARGE, KafkaError._INVALID_ARG,
})
# The producer's own cap; topics' max.message.bytes are below it (veille.topics).
MAX_MESSAGE_BYTES = 1_000_000


@dataclass
class SendResult:
    permanent: dict[int, str] = field(default_factory=dict)  # owner index -> error
    transient: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.permanent and not self.transient


def _is_permanent(err: KafkaError) -> bool:
    return err.code() in PERMANENT_ERRORS


class OutputSender:
    """Owns the router's producer: idempotent, acks=all, every delivery report checked."""

    def __init__(self, settings: Settings, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.producer = Producer({
            **settings.kafka_client_config(),
            "client.id": f"{settings.topic_prefix}-router",
            "enable.idempotence": True,  # librdkafka leaves it off by default
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "zstd",
            "message.max.bytes": MAX_MESSAGE_BYTES,
            "delivery.timeout.ms": int(timeout * 1000),
        })

    def send(self, outputs: Sequence[tuple[int, Output]]) -> SendResult:
        """Blocking: produce every (owner, output) and wait for its report."""
        result = SendResult()

        def reporter(owner: int):  # type: ignore[no-untyped-def]
            def report(err: KafkaError | None, _msg: object) -> None:
                if err is None:
                    return
                if _is_permanent(err):
                    result.permanent.setdefault(owner, str(err))
                else:
                    result.transient.append(str(err))
            return report

        reports: dict[int, Any] = {}  # one callback per message, shared by its outputs
        for owner, o in outputs:
            if owner in result.permanent:
                continue
            report = reports.get(owner)
            if report is None:
                report = reports[owner] = reporter(owner)
            while True:
                try:
                    self.producer.produce(o.topic, key=o.key, value=o.value, on_delivery=report)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    self.producer.poll(0.05)
                except KafkaException as exc:
                    err = exc.args[0]
                    if isinstance(err, KafkaError) and not _is_permanent(err):
                        result.transient.append(str(err))
                    else:
                        result.permanent.setdefault(owner, str(err))
                    break
        left = self.producer.flush(self.timeout)
        if left:
            result.transient.append(f"{left} outputs not acknowledged within {self.timeout:.0f}s")
        return result

    def close(self) -> None:
        self.producer.flush(self.timeout)
