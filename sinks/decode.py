"""The sink's first step: a routed message → a record the store can hold, or a dead letter."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import ValidationError

from veille.deadletter import make_dead_letter
from veille.kafka import Message
from veille.schemas import codec
from veille.schemas.models import MODELS, DeadLetter, Record
from veille.topics import ROUTED_TYPES

COMPONENT = "sink"
# DateTime64(3) columns hold 1900..2299; before the Unix epoch is a bug upstream anyway.
STORE_TIME_RANGE = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2262, 1, 1, tzinfo=UTC))


def _out_of_store_range(record: Record) -> str | None:
    """A time the store cannot hold would fail every insert of its batch, forever: refuse it here."""
    for name, value in record:
        if isinstance(value, datetime) and not STORE_TIME_RANGE[0] <= value < STORE_TIME_RANGE[1]:
            low, high = STORE_TIME_RANGE
            return f"{name}={value.isoformat()} is outside {low.year}..{high.year}"
    return None


def decode(msg: Message, now: datetime | None = None,
           resolver: codec.Resolver | None = None) -> Record | DeadLetter:
    """A routed record, or the dead letter explaining why the message is not one.

    Raises ``RegistryUnavailable`` (a Confluent schema id not cached, registry unreachable).
    """
    try:
        decoded = codec.decode(msg.value, expect=ROUTED_TYPES, resolver=resolver)
        record = MODELS[decoded.record_type].from_avro(decoded.value)
        problem = _out_of_store_range(record)
        if problem is None:
            return record
        reason, detail = "out_of_range", problem
    except codec.DecodeError as exc:
        reason, detail = exc.reason, exc.detail
    except ValidationError as exc:
        reason, detail = "validation_error", str(exc)
    return make_dead_letter(component=COMPONENT, reason=reason, detail=detail, topic=msg.topic,
                            partition=msg.partition, offset=msg.offset, key=msg.key, value=msg.value,
                            failed_at=now)
