"""Hub settings, read from the environment (prefix ``VEILLE_``) with local defaults.

One object for every component so that a deployment is configured the same way
everywhere: the local demo needs no variable at all, production sets a handful.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _xdg(var: str, fallback: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / fallback) / "veille"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VEILLE_", env_file=None, extra="ignore")

    # Where the local broker's data, the embedded store and PID files live (never the repo).
    state_dir: Path = Field(default_factory=lambda: _xdg("XDG_STATE_HOME", ".local/state"))
    # Where downloaded broker jars are cached; shared by every state dir on the machine.
    cache_dir: Path = Field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache"))

    # Kafka. Empty bootstrap means "the local broker started by `veille broker start`".
    bootstrap_servers: str = ""
    broker_port: int = 0  # 0: pick a free loopback port at start
    broker_heap: str = "512m"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")

    # Topic layout. Local defaults work on one broker; production sets 3 / 2.
    topic_prefix: str = "veille"
    partitions: int = 3
    replication_factor: int = 1
    min_insync_replicas: int = 1
    retention_days: int = 30
    dead_letter_retention_days: int = 14

    # Producers.
    delivery_timeout_ms: int = 30_000
    linger_ms: int = 5

    # Key of the reporter pseudonym (HMAC). The default is for local use only:
    # production sets its own secret, or pseudonyms are guessable from contacts.
    pseudonym_key: SecretStr = SecretStr("veille-local-development-key")

    # Territory (municipalities, agencies, service areas, routing rules).
    territory_dir: Path = Field(
        default_factory=lambda: Path(__file__).parent / "territories" / "example"
    )

    # ClickHouse: empty URL means the embedded chDB store under state_dir.
    clickhouse_url: str = ""
    clickhouse_database: str = "veille"
    sink_batch_rows: int = 10_000
    sink_batch_seconds: float = 1.0

    # Incident-level rows expire (GDPR minimisation); aggregate indicators are kept longer.
    store_incident_ttl_days: int = 400
    store_aggregate_ttl_days: int = 3650

    # Metrics/HTTP ports (0 = any free port). Containers set the host to 0.0.0.0.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    intake_port: int = 8080

    @property
    def broker_dir(self) -> Path:
        return self.state_dir / "broker"

    @property
    def chdb_path(self) -> Path:
        return self.state_dir / "chdb"

    def kafka_bootstrap(self) -> str:
        """Configured servers, else the address the local broker recorded at start."""
        if self.bootstrap_servers:
            return self.bootstrap_servers
        info = self.broker_dir / "broker.json"
        if info.exists():
            return str(json.loads(info.read_text())["bootstrap"])
        return "127.0.0.1:9092"

    def kafka_client_config(self) -> dict[str, str | int | float | bool]:
        """librdkafka connection + security settings shared by every confluent-kafka client."""
        conf: dict[str, str | int | float | bool] = {"bootstrap.servers": self.kafka_bootstrap()}
        if self.security_protocol != "PLAINTEXT":
            conf["security.protocol"] = self.security_protocol
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        return conf


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
