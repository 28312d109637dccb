"""Recording a prevention action on ``<prefix>.pcs.cascade`` (the CLI and the desk share it).

The event waits for the broker's acknowledgement (``acks=all``, idempotent producer); the
action's id is the key, so a re-recorded action (same id) replaces the earlier one in the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from veille.pcs.events import PreventionEvent, encode
from veille.pcs.prevention import PreventionAction

PublishPrevention = Callable[[PreventionEvent], bool]


def prevention_event(action: PreventionAction, report_ids: Sequence[str] = ()) -> PreventionEvent:
    return PreventionEvent(action=action, at=int(time.time() * 1000), report_ids=tuple(report_ids))


def prevention_publisher(settings: Any) -> PublishPrevention:
    """A function that publishes one prevention event and says whether the broker took it."""
    from confluent_kafka import Producer

    from veille.topics import Topics

    producer = Producer({**settings.kafka_client_config(), "acks": "all", "enable.idempotence": True})
    topic = Topics(settings.topic_prefix).pcs_cascade

    def publish(event: PreventionEvent) -> bool:
        producer.produce(topic, key=event.action.id.encode(), value=encode(event))
        return producer.flush(30) == 0

    return publish


__all__ = ["PublishPrevention", "prevention_event", "prevention_publisher"]
