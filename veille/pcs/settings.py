"""The PCS settings (``VEILLE_PCS_*``): the register's key, nothing else so far."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class PcsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VEILLE_PCS_", env_file=None, extra="ignore")
    # Fernet key of the vulnerable-persons register (``veille pcs register key`` makes one);
    # empty: the register cannot be read nor written (the representatives' page shows nobody).
    register_key: SecretStr = SecretStr("")


__all__ = ["PcsSettings"]
