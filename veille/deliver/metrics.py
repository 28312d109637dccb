"""Prometheus metrics of the deliverer (``veille deliver run``), on the default registry.

Declared here, once, so that the alert rules (``deploy/prometheus/rules/veille.rules.yml``:
``DispatchUndelivered``, ``WebhookDisabled``) and their structural test know them before the
deliverer that sets them is imported. Labels stay bounded: agency ids of the territory, the
``DeliveryMethod`` and ``DeliveryOutcome`` symbols; never a dispatch id, a URL or an address.

What each one means is the deliverer's contract with the alert rules and the runbook
(deploy/README.md, "DispatchUndelivered", "WebhookDisabled"):

* ``ATTEMPTS`` counts every attempt by its outcome (the ``outcome`` of its ``DeliveryReceipt``);
* ``OLDEST_UNDELIVERED`` is, per agency, the age in seconds of its oldest dispatch not yet
  accepted by one of its methods, counted from ``routed_at`` (0 when none waits);
* ``DISABLED`` is 1 while a destination of the agency is disabled (it answered HTTP 410, nothing
  more is sent to it until its configuration changes), else 0;
* ``PENDING`` is, per agency, the number of dispatches waiting for a (next) attempt;
* ``LATENCY`` observes, per method, the time from ``routed_at`` to the accepted attempt's end.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ATTEMPTS = Counter(
    "veille_deliver_attempts_total",
    "Attempts to deliver a dispatch to its agency, by method and outcome (delivered, retry, failed, "
    "disabled, undelivered).",
    ["agency", "method", "outcome"],
)
OLDEST_UNDELIVERED = Gauge(
    "veille_deliver_oldest_undelivered_seconds",
    "Age (since routed_at) of the agency's oldest dispatch not accepted yet by one of its methods; "
    "0 when none waits.",
    ["agency"],
)
DISABLED = Gauge(
    "veille_deliver_disabled",
    "1 while the agency's destination for this method is disabled (it answered HTTP 410), else 0.",
    ["agency", "method"],
)
PENDING = Gauge(
    "veille_deliver_pending",
    "Dispatches of the agency waiting for a (next) delivery attempt.",
    ["agency"],
)
LATENCY = Histogram(
    "veille_deliver_latency_seconds",
    "Time from a dispatch's routed_at to the end of its accepted delivery attempt, per method.",
    ["method"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 1800, 3600, 14_400, 86_400),
)

CASE_UPDATES = Counter(
    "veille_deliver_case_updates_total",
    "Updates of a case (docs/grouping.md) by method and what became of them: sent (webhook, "
    "the e-mail of a case's latest update), coalesced (folded into a later update e-mail), "
    "skipped (Open311: not a new service request)", ["method", "outcome"])

__all__ = ["ATTEMPTS", "CASE_UPDATES", "DISABLED", "LATENCY", "OLDEST_UNDELIVERED", "PENDING"]
