"""Photos are kept by digest, once: in a private directory, and in an S3-compatible bucket
(moto's standalone server, a real HTTP S3 API, through boto3)."""

from __future__ import annotations

import hashlib
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from photo_helpers import camera_jpeg

from veille.photos.retention import purge
from veille.photos.sanitise import sanitise
from veille.photos.settings import PhotoSettings
from veille.photos.store import LocalStore, PhotoStore, S3Store, open_store

SETTINGS = PhotoSettings()


def _s3(endpoint: str) -> S3Store:
    bucket = f"photos-{uuid.uuid4().hex[:8]}"
    settings = PhotoSettings(s3_bucket=bucket, s3_endpoint_url=endpoint, s3_access_key_id="test",
                             s3_secret_access_key="test")  # type: ignore[arg-type]
    store = open_store(settings, Path("/nonexistent"))
    assert isinstance(store, S3Store)
    store.client.create_bucket(Bucket=bucket)
    return store


def _kept_once(store: PhotoStore) -> None:
    clean = sanitise(camera_jpeg(), SETTINGS)
    assert store.put(clean.sha256, clean.data) is True
    again = sanitise(camera_jpeg(), SETTINGS)  # the same photo uploaded a second time
    assert again.sha256 == clean.sha256
    assert store.put(again.sha256, again.data) is False
    data = store.get(clean.sha256)
    assert data == clean.data and hashlib.sha256(data).hexdigest() == clean.sha256
    assert store.get("0" * 64) is None
    with pytest.raises(ValueError):
        store.get("../../etc/passwd")


def test_local_store_keeps_a_photo_once_by_digest_in_private_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "photos")
    _kept_once(store)
    files = [p for p in (tmp_path / "photos" / "photos").iterdir()]
    assert len(files) == 1
    assert files[0].name.removesuffix(".jpg") == hashlib.sha256(files[0].read_bytes()).hexdigest()
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "photos").stat().st_mode) == 0o700


def test_default_store_is_under_the_state_dir(tmp_path: Path) -> None:
    store = open_store(PhotoSettings(), tmp_path)
    assert isinstance(store, LocalStore) and store.root == tmp_path / "photos"


def test_s3_store_keeps_a_photo_once_by_digest(s3_endpoint: str) -> None:
    store = _s3(s3_endpoint)
    _kept_once(store)
    digest = sanitise(camera_jpeg(), SETTINGS).sha256
    listed = store.client.list_objects_v2(Bucket=store.bucket)["Contents"]
    assert [o["Key"] for o in listed] == [f"veille-photos/photos/{digest}.jpg"]  # stored once
    head = store.client.head_object(Bucket=store.bucket, Key=listed[0]["Key"])
    assert head["ContentType"] == "image/jpeg"
    # Another client (plain boto3, same server) reads the same bytes.
    other = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="x", aws_secret_access_key="x",
                         region_name="us-east-1")
    body = other.get_object(Bucket=store.bucket, Key=listed[0]["Key"])["Body"].read()
    assert body == store.get(digest)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_retention_deletes_a_photo_when_its_last_incident_is_past_retention(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    store: PhotoStore = LocalStore(tmp_path) if backend == "local" \
        else _s3(request.getfixturevalue("s3_endpoint"))
    clean = sanitise(camera_jpeg(), SETTINGS)
    store.put(clean.sha256, clean.data)
    first, second = uuid.uuid4(), uuid.uuid4()
    store.refer(first, clean.sha256)
    store.refer(second, clean.sha256)  # the same photo sent with two reports
    assert set(store.incidents()) == {first, second} and set(store.users_of(clean.sha256)) == {first, second}
    now = datetime.now(UTC)
    closed = {first: now - timedelta(days=31)}  # the first closed 31 days ago, the second open

    report = purge(store, lambda ids: {i: closed[i] for i in ids if i in closed}, SETTINGS, now)
    assert (report.references_dropped, report.photos_deleted) == (1, 0)
    assert store.get(clean.sha256) == clean.data and store.users_of(clean.sha256) == [second]

    closed[second] = now - timedelta(days=29)  # closed, within the 30 days
    report = purge(store, lambda ids: {i: closed[i] for i in ids if i in closed}, SETTINGS, now)
    assert report.photos_deleted == 0
    later = now + timedelta(days=2)
    report = purge(store, lambda ids: {i: closed[i] for i in ids if i in closed}, SETTINGS, later)
    assert (report.references_dropped, report.photos_deleted, report.photos_kept) == (1, 1, 0)
    assert store.get(clean.sha256) is None and list(store.incidents()) == []


def test_retention_deletes_a_never_closed_incidents_photo_after_the_longest_retention(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    clean = sanitise(camera_jpeg(), SETTINGS)
    store.put(clean.sha256, clean.data)
    store.refer(uuid.uuid4(), clean.sha256)
    now = datetime.now(UTC)
    assert purge(store, lambda ids: {}, SETTINGS, now + timedelta(days=364)).photos_deleted == 0
    assert purge(store, lambda ids: {}, SETTINGS, now + timedelta(days=366)).photos_deleted == 1
