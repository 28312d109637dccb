"""Prometheus metrics of the deliverer (``veille deliver run``), read by the alert rules."""

from prometheus_client import Counter, Gauge, Histogram

ATTEMPTS = Counter("veille_deliver_attempts_total", "Delivery attempts, per body, method and outcome",
                   ["agency", "method", "outcome"])
OLDEST_UNDELIVERED = Gauge("veille_deliver_oldest_undelivered_seconds",
                           "Age of the oldest dispatch past the undelivered threshold, per body (0: none)",
                           ["agency"])
DISABLED = Gauge("veille_deliver_disabled", "1 while a destination answered HTTP 410 (nothing more is sent)",
                 ["agency", "method"])
PENDING = Gauge("veille_deliver_pending",
                "Dispatches consumed but not yet delivered by every method, per body", ["agency"])
LATENCY = Histogram("veille_deliver_latency_seconds", "Routed to delivered, per method",
                    ["method"], buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800))
