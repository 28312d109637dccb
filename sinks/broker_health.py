"""Is Kafka up, seen from the sink: librdkafka's statistics of the sink's consumer, as gauges.

The broker image exposes no metrics (no JMX exporter in the compose stack), so the ops
dashboard's "broker up" panel reads what the sink's own client sees: how many brokers of the
cluster it knows, and how many of its connections to them are up.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from prometheus_client import Gauge

log = logging.getLogger(__name__)

BROKERS_UP = Gauge("veille_kafka_brokers_up", "Brokers the sink's consumer has an open connection to")
BROKERS_KNOWN = Gauge("veille_kafka_brokers_known", "Brokers of the cluster known to the sink's consumer")
STATS_INTERVAL_MS = 5000


def on_stats(raw: str) -> None:
    try:
        brokers = json.loads(raw).get("brokers", {}).values()
    except (ValueError, AttributeError):
        log.debug("unreadable librdkafka statistics")
        return
    # nodeid -1 is a bootstrap placeholder, not a broker of the cluster.
    real = [b for b in brokers if int(b.get("nodeid", -1)) >= 0]
    BROKERS_KNOWN.set(len(real))
    BROKERS_UP.set(sum(1 for b in real if b.get("state") == "UP"))


def stats_config() -> dict[str, Any]:
    return {"statistics.interval.ms": STATS_INTERVAL_MS, "stats_cb": on_stats}
