"""Settings of photos (environment, prefix ``VEILLE_PHOTOS_``): bounds, object store, URLs, retention.

Local defaults work with no variable: photos in ``<state dir>/photos``, URLs signed with a local
key (production sets its own, shared by the intake that serves them and the deliverer that
sends them), no S3. ``VEILLE_PHOTOS_S3_BUCKET`` set: the bucket holds them instead.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class PhotoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VEILLE_PHOTOS_", env_file=None, extra="ignore")

    # What is accepted: the upload's size, the image's pixels (read from its header, before
    # anything is decoded) and sides. A phone's photo is 3-8 MB and 12-50 Mpx.
    max_bytes: int = Field(default=15 * 1024 * 1024, gt=0)
    max_pixels: int = Field(default=60_000_000, gt=0)
    max_side: int = Field(default=12_000, gt=0)
    min_side: int = Field(default=16, gt=0)
    # What is kept: re-encoded JPEG, longest side at most this (an agency needs to see the
    # drain, not print it), at this quality.
    stored_side: int = Field(default=2560, ge=64)
    jpeg_quality: int = Field(default=85, ge=30, le=95)
    max_per_report: int = Field(default=5, ge=1, le=10)

    # The object store. Empty bucket: a private directory (default <state dir>/photos).
    dir: str = ""
    s3_bucket: str = ""
    s3_endpoint_url: str = ""  # an S3-compatible server (MinIO, Garage, Ceph...); "" = AWS
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""  # "" = the SDK's own chain (environment, instance role...)
    s3_secret_access_key: SecretStr = SecretStr("")
    s3_prefix: str = "veille-photos/"

    # Signed, expiring URLs (veille.photos.links): the key, former keys still accepted, the
    # lifetime, and where the intake's /photos/ is reached ("" = no photo URL is sent).
    url_key: SecretStr = SecretStr("veille-local-photo-url-key")
    url_previous_keys: SecretStr = SecretStr("")
    url_max_age_hours: float = Field(default=168.0, gt=0, le=24 * 90)
    base_url: str = ""

    # Retention (veille.photos.retention): deleted this many days after the incident is
    # closed (resolved or rejected), and in any case this many days after upload.
    retention_days_after_closed: int = Field(default=30, ge=0)
    max_retention_days: int = Field(default=365, ge=1)

    @field_validator("base_url")
    @classmethod
    def _base_url_is_http(cls, value: str) -> str:
        value = value.strip()
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.hostname or parts.query
                      or parts.fragment or parts.username or parts.password):
            raise ValueError("base_url: an http(s) URL with a host, no query, fragment or credentials, "
                             "e.g. https://veille.example.fr")
        return value.rstrip("/")

    def store_dir(self, state_dir: Path) -> Path:
        return Path(self.dir) if self.dir else state_dir / "photos"

    @property
    def url_keys(self) -> list[str]:
        """Every accepted key, the current one last (itsdangerous signs with the last)."""
        previous = [k.strip() for k in self.url_previous_keys.get_secret_value().split(",") if k.strip()]
        return [*previous, self.url_key.get_secret_value()]

    @property
    def url_max_age(self) -> timedelta:
        return timedelta(hours=self.url_max_age_hours)
