"""`veille photos purge` applies the retention with the closure times of the shared store (chDB):
the photo of an incident resolved 40 days ago goes, the photos of an open one and of a reopened
one stay."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from photo_helpers import camera_jpeg, png

from veille.photos.sanitise import sanitise
from veille.photos.settings import PhotoSettings
from veille.photos.store import LocalStore
from veille.sinks.store import ChdbStore


def test_purge_deletes_the_photos_of_incidents_closed_past_retention(tmp_path: Path) -> None:
    settings = PhotoSettings()
    store = LocalStore(tmp_path / "photos")
    closed, still_open, reopened = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    photos = {}
    for incident, data in ((closed, camera_jpeg()), (still_open, camera_jpeg(color=(1, 2, 200))),
                           (reopened, png(size=(200, 100)))):
        clean = sanitise(data, settings)
        store.put(clean.sha256, clean.data)
        store.refer(incident, clean.sha256)
        photos[incident] = clean.sha256
    now = datetime.now(UTC)

    def at(days: float) -> str:
        return (now - timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S.000")

    shared = ChdbStore(tmp_path / "chdb", "veille")
    shared.migrate()
    events = [(closed, "acknowledged", 45), (closed, "resolved", 40),
              (still_open, "acknowledged", 40),
              (reopened, "resolved", 40), (reopened, "reopened", 35)]
    rows = ", ".join(f"('{uuid.uuid4()}', '{i}', 'mairie-35401', '{s}', '{at(d)}', '{at(d)}')"
                     for i, s, d in events)
    shared.command(f"INSERT INTO veille.status_events (id, incident_id, agency_id, status, at, stored_at) "
                   f"VALUES {rows}")
    shared.close()

    env = {**os.environ, "VEILLE_STATE_DIR": str(tmp_path), "VEILLE_CLICKHOUSE_DATABASE": "veille"}
    done = subprocess.run([sys.executable, "-m", "veille.cli", "photos", "purge"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 references past retention dropped, 1 photos deleted, 2 kept" in done.stdout
    assert store.get(photos[closed]) is None and store.photos_of(closed) == []
    assert store.get(photos[still_open]) is not None and store.get(photos[reopened]) is not None
