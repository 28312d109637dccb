"""Prometheus metrics of the PCS cascade (``veille pcs worker``). Labels are bounded: town
codes, channels, outcomes, steps, reasons; never a representative's contact nor a person."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ACTIVATIONS = Counter("veille_pcs_activations_total", "PCS chains activated, by town and source "
                      "(alert, manual).", ["municipality", "source"])
NOTIFICATIONS = Counter("veille_pcs_notifications_total", "Notifications sent, by channel, chain step "
                        "(owner, substitute, cell) and outcome.", ["channel", "step", "outcome"])
PENDING = Gauge("veille_pcs_pending_watches", "Watches waiting for an acknowledgement.")
SKIPPED = Counter("veille_pcs_skipped_total", "Records the worker could not read, by topic kind "
                  "(routed, cascade) and reason.", ["source", "reason"])

__all__ = ["ACTIVATIONS", "NOTIFICATIONS", "PENDING", "SKIPPED"]
