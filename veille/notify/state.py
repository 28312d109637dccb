"""The notifier's state: per incident with a consent, its :class:`Track` and the state last told.

A SQLite file in the state dir (``notify/tracks.sqlite3``, mode 0600, WAL, synchronous FULL): ids,
statuses and times only, never a contact (those stay on the consent topic). Why a file beside
the committed offsets: the overall state of an incident folds every record of it since it was
routed, which may be weeks of the routed topic; the offsets say where to resume, this says what
was folded and told so far. Each told state is written before the offsets that led to it are
committed, so a restart never tells a change twice (except one whose message went out in the
instant before this write: at most one message again, with the same ``Message-ID``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from veille.notify.changes import State, Track

STATE_FILE = Path("notify") / "tracks.sqlite3"


@dataclass
class Entry:
    track: Track
    told: State | None


class TrackStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh = not path.exists()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if fresh:
            os.chmod(path, 0o600)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS tracks (incident_id TEXT PRIMARY KEY, "
                         "track TEXT NOT NULL, told TEXT, closed_at TEXT)")

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> TrackStore:
        return cls(state_dir / STATE_FILE)

    def get(self, incident_id: UUID) -> Entry | None:
        with self._lock:
            row = self._db.execute("SELECT track, told FROM tracks WHERE incident_id = ?",
                                   (str(incident_id),)).fetchone()
        if row is None:
            return None
        told = State.from_json(json.loads(row[1])) if row[1] else None
        return Entry(Track.from_json(json.loads(row[0])), told)

    def put(self, incident_id: UUID, entry: Entry) -> None:
        told = json.dumps(entry.told.as_json()) if entry.told else None
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO tracks VALUES (?, ?, ?, ?)",
                             (str(incident_id), json.dumps(entry.track.as_json()), told,
                              entry.track.closed_at))

    def delete(self, incident_id: UUID) -> None:
        with self._lock:
            self._db.execute("DELETE FROM tracks WHERE incident_id = ?", (str(incident_id),))

    def closed_before(self, iso: str) -> Iterator[UUID]:
        with self._lock:
            rows = self._db.execute("SELECT incident_id FROM tracks "
                                    "WHERE closed_at IS NOT NULL AND closed_at <= ?", (iso,)).fetchall()
        return (UUID(r[0]) for r in rows)

    def __contains__(self, incident_id: object) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM tracks WHERE incident_id = ?",
                                    (str(incident_id),)).fetchone() is not None

    def close(self) -> None:
        with self._lock:
            self._db.close()
