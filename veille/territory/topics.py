"""The territory's Kafka topics: the hub's layout for its municipalities and agencies.

``veille.topics`` declares the layout for any list of municipalities and agencies; here the
territory file says which (an intake topic per municipality, a dispatch topic per agency),
and a component starting up creates or aligns them if its Kafka user may.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from veille.config import Settings
from veille.territory.files import load_territory
from veille.topics import TopicSpec, ensure_topics, topic_specs

log = logging.getLogger("veille.topics")  # the channel of veille.topics's own warnings


def territory_topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic of the hub for the territory at ``settings.territory_dir``."""
    territory = load_territory(settings.territory_dir)
    return topic_specs(settings, territory.municipalities, territory.agencies)


# Admin requests that wait for the controller time out while the cluster still names a node
# that just died (until it is fenced): a component started then must start anyway.
_RETRIED = (KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT, KafkaError.NOT_CONTROLLER)


def ensure_territory_topics(settings: Settings, retry_seconds: float = 90.0) -> bool:
    """Create or align the territory's topics; False (with a warning) when this process's Kafka
    user may not manage topics: in production an admin created them, and each component runs
    as a user whose ACLs only let it read and write its own topics.

    Every step is idempotent, so a timeout waiting for the controller is retried with a new
    admin client (its metadata, and so the controller it waits for, are fresh; a client keeps
    waiting for the dead node it cached)."""
    deadline = time.monotonic() + retry_seconds
    while True:
        try:
            ensure_topics(AdminClient(settings.kafka_client_config()), territory_topic_specs(settings),
                          timeout=15.0)
            return True
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if not isinstance(error, KafkaError):
                raise
            if error.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                KafkaError.CLUSTER_AUTHORIZATION_FAILED):
                log.warning("not allowed to create/align topics (%s): using them as they are", error.str())
                return False
            if error.code() not in _RETRIED or time.monotonic() >= deadline:
                raise
            log.warning("topics: %s; retrying with a new admin client", error.str())
            time.sleep(1.0)


__all__ = ["ensure_territory_topics", "territory_topic_specs"]
