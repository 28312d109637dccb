"""Is Kafka up, seen from the sink: librdkafka's statistics of the sink's consumer, as gauges.

The broker image exposes no metrics (no JMX exporter in the compose stack), so the ops
dashboard's "broker up" panel reads what the sink's own client sees: how many brokers of the
cluster it knows, and how many of its connections to them are up.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from typing import Any

from prometheus_client import Gauge

log = logging.getLogger(__name__)

STATS_INTERVAL_MS = 5000


@cache
def _gauges() -> tuple[Gauge, Gauge]:
    # Created on first use, by the sink only: every `veille` command imports this module, and a
    # router or an intake exporting "0 brokers up" would be read as an outage.
    return (Gauge("veille_kafka_brokers_up", "Brokers the sink's consumer has an open connection to"),
            Gauge("veille_kafka_brokers_known", "Brokers of the cluster known to the sink's consumer"))


def on_stats(raw: str) -> None:
    try:
        brokers = json.loads(raw).get("brokers", {}).values()
    except (ValueError, AttributeError):
        log.debug("unreadable librdkafka statistics")
        return
    # nodeid -1 is a bootstrap placeholder, not a broker of the cluster.
    real = [b for b in brokers if int(b.get("nodeid", -1)) >= 0]
    up, known = _gauges()
    known.set(len(real))
    up.set(sum(1 for b in real if b.get("state") == "UP"))


def stats_config() -> dict[str, Any]:
    _gauges()  # exported from the start, before the first statistics arrive
    return {"statistics.interval.ms": STATS_INTERVAL_MS, "stats_cb": on_stats}
