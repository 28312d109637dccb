"""The PCS settings (``VEILLE_PCS_*``): the register's key, the notifications' retries."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class PcsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VEILLE_PCS_", env_file=None, extra="ignore")
    # Fernet key of the vulnerable-persons register (``veille pcs register key`` makes one);
    # empty: the register cannot be read nor written (the representatives' page shows nobody).
    register_key: SecretStr = SecretStr("")
    # A notification that failed transiently (SMTP 4xx, timeout, gateway 5xx: outcome ``retry``)
    # is sent again at most ``notify_retries`` times, after base, 2 x base, 4 x base... seconds
    # (capped); the substitute's deadline runs meanwhile, so a long outage still escalates.
    notify_retries: int = Field(default=3, ge=0, le=10)
    retry_base_seconds: float = Field(default=30.0, gt=0)
    retry_max_seconds: float = Field(default=600.0, gt=0)


__all__ = ["PcsSettings"]
