"""The sink's first step: a message → a record the store can hold, or a dead letter.

What a message may be depends on its topic: a routed record (RoutedIncident, RoutedAlert,
StatusUpdate) on ``<prefix>.routed``, a ``DeliveryReceipt`` on ``<prefix>.delivery``; anything
else there is dead-lettered ``wrong_record_type``.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from pydantic import ValidationError

from veille.deadletter import make_dead_letter
from veille.kafka import Message
from veille.pcs import events as pcs_events
from veille.schemas import codec
from veille.schemas.models import MODELS, DeadLetter
from veille.sinks.rows import Row, incident_problem, out_of_store_range
from veille.topics import PCS_TYPES, ROUTED_TYPES

COMPONENT = "sink"


def decode(msg: Message, now: datetime | None = None, resolver: codec.Resolver | None = None,
           expect: Collection[str] = ROUTED_TYPES) -> Row | DeadLetter:
    """A record of the types ``expect`` names, or the dead letter explaining why the message is not one.

    Raises ``RegistryUnavailable`` (a Confluent schema id not cached, registry unreachable).
    """
    if tuple(expect) == PCS_TYPES:
        try:
            return pcs_events.decode(msg.value or b"")
        except ValidationError as exc:
            return make_dead_letter(component=COMPONENT, reason="validation_error", detail=str(exc),
                                    topic=msg.topic, partition=msg.partition, offset=msg.offset,
                                    key=msg.key, value=msg.value, failed_at=now)
    try:
        plain = codec.decode_plain(msg.value, "RoutedIncident", resolver=resolver) \
            if "RoutedIncident" in expect else None
        if plain is not None:
            # The common case, without a model: see sinks/rows.py.
            problem = incident_problem(plain)
            if problem is None:
                return plain
            reason, detail = problem
        else:
            decoded = codec.decode(msg.value, expect=expect, resolver=resolver)
            record = MODELS[decoded.record_type].from_avro(decoded.value)
            found = out_of_store_range(record)
            if found is None:
                return record
            reason, detail = "out_of_range", found
    except codec.DecodeError as exc:
        reason, detail = exc.reason, exc.detail
    except ValidationError as exc:
        reason, detail = "validation_error", str(exc)
    return make_dead_letter(component=COMPONENT, reason=reason, detail=detail, topic=msg.topic,
                            partition=msg.partition, offset=msg.offset, key=msg.key, value=msg.value,
                            failed_at=now)
