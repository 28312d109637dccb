"""The territory's Kafka topics: the hub's layout for its municipalities and agencies.

``veille.topics`` declares the layout for any list of municipalities and agencies; here the
territory file says which (an intake topic per municipality, a dispatch topic per agency),
and a component starting up creates or aligns them if its Kafka user may.
"""

from __future__ import annotations

import logging

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


def ensure_territory_topics(settings: Settings) -> bool:
    """Create or align the territory's topics; False (with a warning) when this process's Kafka
    user may not manage topics: in production an admin created them, and each component runs
    as a user whose ACLs only let it read and write its own topics."""
    try:
        ensure_topics(AdminClient(settings.kafka_client_config()), territory_topic_specs(settings))
    except KafkaException as exc:
        if exc.args[0].code() not in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                      KafkaError.CLUSTER_AUTHORIZATION_FAILED):
            raise
        log.warning("not allowed to create/align topics (%s): using them as they are", exc.args[0].str())
        return False
    return True


__all__ = ["ensure_territory_topics", "territory_topic_specs"]
