"""Prometheus metrics of the notifier (``veille notify run``). Labels are bounded: channel,
change and outcome symbols; never an incident id, a reference or an address."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

MESSAGES = Counter("veille_notify_messages_total",
                   "Messages to residents (or their relays), by channel, change and outcome "
                   "(delivered, retry, failed).", ["channel", "change", "outcome"])
TRACKED = Gauge("veille_notify_tracked_incidents", "Incidents with a consent the notifier follows.")
WITHDRAWN = Counter("veille_notify_consents_withdrawn_total",
                    "Consents the notifier withdrew (tombstones), by reason (retention, orphan).", ["reason"])
SKIPPED = Counter("veille_notify_skipped_total",
                  "Records of the routed topic the notifier could not read, by reason.", ["reason"])

CHANGELOG_FAILED = Counter("veille_notify_changelog_failed_total",
                           "Entries the notifier's changelog (<prefix>.notify.tracks) did not acknowledge: "
                           "the record is held and written again, nothing past it committed.")
RESTORED = Gauge("veille_notify_restore_seconds",
                 "How long the last assignment's state took to restore from the changelog.")

__all__ = ["CHANGELOG_FAILED", "MESSAGES", "RESTORED", "SKIPPED", "TRACKED", "WITHDRAWN"]
