"""CAP alerts ``veille import cap`` already published: a feed polled again publishes only what is new.

The router drops an identical re-send for 24 hours and the store keeps one row per alert,
but a feed (MeteoAlarm's, a prefecture's) lists an alert for as long as it is in force,
often days: re-published after the router's window, it would be dispatched to the agencies
again. So the importer remembers each alert (sender, identifier, sent) it saw acknowledged,
in ``<state_dir>/cap-seen.json``, until a day after the alert expires (30 days when it never
does), and publishes it once. One import at a time (a cron job).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SEEN_FILE = "cap-seen.json"
KEEP_AFTER_EXPIRY = timedelta(days=1)
KEEP_WITHOUT_EXPIRY = timedelta(days=30)


def seen_key(alert: dict[str, Any]) -> str:
    """CAP's own reference syntax: ``sender,identifier,sent``."""
    return f"{alert['sender']},{alert['identifier']},{alert['sent'].isoformat()}"


def _until(alert: dict[str, Any]) -> datetime:
    ends = [info.get("expires") for info in alert["infos"]]
    if not ends or any(e is None for e in ends):
        return alert["sent"] + KEEP_WITHOUT_EXPIRY
    return max(e for e in ends if e is not None) + KEEP_AFTER_EXPIRY


class SeenAlerts:
    def __init__(self, state_dir: Path, now: datetime | None = None) -> None:
        self.path = Path(state_dir) / SEEN_FILE
        now = now or datetime.now(UTC)
        try:
            entries: dict[str, str] = json.loads(self.path.read_text())
        except FileNotFoundError:
            entries = {}
        # Forget what can no longer come back: the file stays as small as the feeds.
        self.entries = {k: v for k, v in entries.items() if datetime.fromisoformat(v) > now}

    def split(self, alerts: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(new alerts, alerts already published)."""
        new: list[dict[str, Any]] = []
        old: list[dict[str, Any]] = []
        keys = set(self.entries)
        for alert in alerts:  # twice in one document counts as already published too
            key = seen_key(alert)
            (old if key in keys else new).append(alert)
            keys.add(key)
        return new, old

    def remember(self, alerts: Iterable[dict[str, Any]]) -> None:
        for alert in alerts:
            self.entries[seen_key(alert)] = _until(alert).astimezone(UTC).isoformat()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries, indent=1, sort_keys=True))
        os.replace(tmp, self.path)  # atomic: a crash leaves the previous file
