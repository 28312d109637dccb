"""The photo object store: clean photos by SHA-256, and which incidents refer to each.

Keys (the same in both back-ends):

* ``photos/<sha256>.jpg``: the re-encoded photo; written once, a second upload of the same
  photo finds it there and writes nothing;
* ``refs/<incident id>/<sha256>``: empty marker, the incident refers to the photo;
* ``users/<sha256>/<incident id>``: the same, read the other way: a photo is deleted when its
  last incident's retention is over (:mod:`veille.photos.retention`).

:class:`LocalStore` is a private directory (mode 0700, files 0600, written atomically);
:class:`S3Store` an S3-compatible bucket through boto3 (signing, retries and endpoints are the
SDK's). Neither is readable by the cells: the shared store (ClickHouse) never holds a photo.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from veille.photos.settings import PhotoSettings

DIGEST = re.compile(r"^[0-9a-f]{64}$")


def _check(digest: str) -> str:
    if not DIGEST.match(digest):
        raise ValueError("a photo is named by the SHA-256 of its bytes (64 lowercase hex digits)")
    return digest


def photo_key(digest: str) -> str:
    return f"photos/{_check(digest)}.jpg"


class PhotoStore(Protocol):
    def put(self, digest: str, data: bytes) -> bool:
        """Keep the photo; False if it was already there (nothing written)."""

    def get(self, digest: str) -> bytes | None: ...

    def delete(self, digest: str) -> None: ...

    def refer(self, incident_id: UUID, digest: str) -> None:
        """Record that ``incident_id`` refers to the photo."""

    def incidents(self) -> Iterator[UUID]:
        """Every incident that refers to a photo."""

    def photos_of(self, incident_id: UUID) -> list[str]: ...

    def users_of(self, digest: str) -> list[UUID]: ...

    def forget(self, incident_id: UUID, digest: str) -> None:
        """Drop the reference (both markers)."""

    def stored_at(self, digest: str) -> datetime | None: ...


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key

    def _write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")  # 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put(self, digest: str, data: bytes) -> bool:
        if self._path(photo_key(digest)).exists():
            return False
        self._write(photo_key(digest), data)
        return True

    def get(self, digest: str) -> bytes | None:
        try:
            return self._path(photo_key(digest)).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, digest: str) -> None:
        self._path(photo_key(digest)).unlink(missing_ok=True)

    def refer(self, incident_id: UUID, digest: str) -> None:
        self._write(f"refs/{incident_id}/{_check(digest)}", b"")
        self._write(f"users/{digest}/{incident_id}", b"")

    def incidents(self) -> Iterator[UUID]:
        refs = self._path("refs")
        if refs.is_dir():
            for entry in sorted(refs.iterdir()):
                yield UUID(entry.name)

    def photos_of(self, incident_id: UUID) -> list[str]:
        folder = self._path(f"refs/{incident_id}")
        return sorted(p.name for p in folder.iterdir() if DIGEST.match(p.name)) if folder.is_dir() else []

    def users_of(self, digest: str) -> list[UUID]:
        folder = self._path(f"users/{_check(digest)}")
        return sorted(UUID(p.name) for p in folder.iterdir() if not p.name.startswith(".")) \
            if folder.is_dir() else []

    def forget(self, incident_id: UUID, digest: str) -> None:
        for key in (f"refs/{incident_id}/{_check(digest)}", f"users/{digest}/{incident_id}"):
            path = self._path(key)
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # only when empty

    def stored_at(self, digest: str) -> datetime | None:
        try:
            return datetime.fromtimestamp(self._path(photo_key(digest)).stat().st_mtime, UTC)
        except FileNotFoundError:
            return None


class S3Store:
    """An S3-compatible bucket (AWS, MinIO, Garage, Ceph...), under ``prefix``."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    @classmethod
    def from_settings(cls, settings: PhotoSettings) -> S3Store:
        import boto3  # only a deployment with a bucket pays for importing the SDK

        options: dict[str, Any] = {"region_name": settings.s3_region}
        if settings.s3_endpoint_url:
            options["endpoint_url"] = settings.s3_endpoint_url
        if settings.s3_access_key_id:
            options["aws_access_key_id"] = settings.s3_access_key_id
            options["aws_secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
        return cls(boto3.client("s3", **options), settings.s3_bucket, settings.s3_prefix)

    def _missing(self, exc: Exception) -> bool:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")

    def _head(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=self.prefix + key))
        except ClientError as exc:
            if self._missing(exc):
                return None
            raise

    def put(self, digest: str, data: bytes) -> bool:
        key = photo_key(digest)
        if self._head(key) is not None:
            return False
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data, ContentType="image/jpeg",
                               ChecksumSHA256=_b64_sha256(digest))
        return True

    def get(self, digest: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=self.prefix + photo_key(digest))
        except ClientError as exc:
            if self._missing(exc):
                return None
            raise
        return bytes(reply["Body"].read())

    def delete(self, digest: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + photo_key(digest))

    def _list(self, prefix: str) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                      Prefix=self.prefix + prefix)
        for page in pages:
            for item in page.get("Contents", []):
                yield str(item["Key"])[len(self.prefix + prefix):]

    def refer(self, incident_id: UUID, digest: str) -> None:
        for key in (f"refs/{incident_id}/{_check(digest)}", f"users/{digest}/{incident_id}"):
            self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=b"")

    def incidents(self) -> Iterator[UUID]:
        seen: set[str] = set()
        for rest in self._list("refs/"):
            head = rest.split("/", 1)[0]
            if head not in seen:
                seen.add(head)
                yield UUID(head)

    def photos_of(self, incident_id: UUID) -> list[str]:
        return sorted(d for d in self._list(f"refs/{incident_id}/") if DIGEST.match(d))

    def users_of(self, digest: str) -> list[UUID]:
        return sorted(UUID(i) for i in self._list(f"users/{_check(digest)}/"))

    def forget(self, incident_id: UUID, digest: str) -> None:
        for key in (f"refs/{incident_id}/{_check(digest)}", f"users/{digest}/{incident_id}"):
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def stored_at(self, digest: str) -> datetime | None:
        head = self._head(photo_key(digest))
        return None if head is None else head["LastModified"].astimezone(UTC)


def _b64_sha256(digest: str) -> str:
    return base64.b64encode(bytes.fromhex(digest)).decode()


def open_store(settings: PhotoSettings, state_dir: Path) -> PhotoStore:
    """The configured store: the bucket when one is set, else the private directory."""
    if settings.s3_bucket:
        return S3Store.from_settings(settings)
    return LocalStore(settings.store_dir(state_dir))
