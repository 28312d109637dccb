"""Hub settings, read from the environment (prefix ``VEILLE_``) with local defaults.

One object for every component so that a deployment is configured the same way
everywhere: the local demo needs no variable at all, production sets a handful.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# What the local broker (veille.local) leaves in ``broker_dir`` for every client to find it.
BROKER_STATE_FILE = "broker.json"
ADMIN_CREDENTIALS_FILE = "admin-credentials.json"


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
    # `veille broker start` turns SASL/SCRAM + ACLs on unless this is false (or --no-auth).
    broker_auth: bool = True
    # "" = automatic: SASL_PLAINTEXT with the local broker's admin when the local broker has
    # auth on and bootstrap_servers is empty or its address, else PLAINTEXT. Production sets
    # SASL_SSL explicitly (see kafka_credentials()).
    security_protocol: str = ""
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    ssl_ca_location: str = ""  # CA bundle for SSL/SASL_SSL; "" = the system's
    # Per-municipality client quotas (`veille security provision`): one flooding publisher
    # cannot take the broker's bandwidth or request threads from the others.
    municipality_producer_byte_rate: int = 1_048_576  # bytes/s per municipality principal
    municipality_request_percentage: float = 25.0  # % of one broker I/O thread
    # Kafka's own admin tools, for what confluent-kafka's AdminClient cannot do (client quotas):
    # a directory of Kafka jars, e.g. a Kafka distribution's libs/. Empty: the jars the local
    # broker runs from, as its broker.json records them (see kafka_tools()).
    kafka_tools_dir: str = ""

    # Topic layout. Local defaults work on one broker; production sets 3 / 2.
    topic_prefix: str = "veille"
    partitions: int = 3
    replication_factor: int = 1
    min_insync_replicas: int = 1
    retention_days: int = 30
    dead_letter_retention_days: int = 14

    # The router exits (for its supervisor to restart it) after this long without a
    # completed batch while its consumer group has a backlog.
    # It must exceed router_session_seconds + 10 s (a rejoin), or the router refuses to start.
    router_stall_seconds: float = 60.0
    # How long a stopping router may take (SIGTERM/SIGINT) before it exits anyway: faust's
    # stop chain waits on each child service in turn, and with the broker unreachable that took
    # over 60 s, past an orchestrator's grace period (Kubernetes: 30 s, then SIGKILL).
    router_stop_seconds: float = 8.0
    # Re-routing and escalation (veille router escalations, streams/escalation.py): a deadline
    # fires this long after it passed on the event-time clock (late acknowledgements in flight
    # still cancel it), the timer looks this often, a refused incident moves at most this many
    # hops before going to the monitoring cell, and the worker's tables live in this store.
    escalation_tolerance_seconds: float = 30.0
    # A partition without a record for this long is caught up: its clock is the wall clock.
    escalation_idle_seconds: float = 10.0
    escalation_tick_seconds: float = 1.0
    reroute_max_hops: int = 3
    escalation_store: str = "rocksdb://"
    # Grouping nearby reports into cases (docs/grouping.md): the router sends groupable reports to
    # <prefix>.grouping (kept this many days) for `veille router grouping`, whose table of open
    # cases lives in this store. False: every report is dispatched on its own, as before.
    grouping: bool = True
    grouping_store: str = "rocksdb://"
    grouping_retention_days: int = 3
    # Consumer session timeout of the router: how long the group waits for a member that
    # stopped heartbeating (a router that died on another host, or under a new instance id).
    router_session_seconds: float = 20.0
    # Static group membership (group.instance.id): a restarted router takes its predecessor's
    # place at once. "" = <topic prefix>-router-<host name>-<hash of the state dir>.
    router_instance_id: str = ""
    # The router's agent takes one stream event per fetched record batch (streams/
    # batch_transport.py) rather than one per record; false: faust's event per record.
    router_record_batches: bool = True

    # Schema registry (Confluent API). Empty: no registry, single-object encoding only and
    # Confluent-framed messages are refused (unsupported_framing). Set, every consumer also
    # decodes the Confluent framing (magic 0 + schema id) and `framing` may select it.
    schema_registry_url: str = ""
    # Basic auth for a registry that is not local (sent over HTTPS only, see schemas/registry.py).
    schema_registry_username: str = ""
    schema_registry_password: SecretStr = SecretStr("")
    schema_registry_timeout: float = 2.0  # seconds per HTTP request
    # What publishers and the router write: "single_object" (default, needs no registry) or
    # "confluent" (needs schema_registry_url and `veille schemas register` done).
    framing: str = "single_object"
    # The local registry (`veille registry start`): HTTP port (0: free one) and JVM heap.
    registry_port: int = 0
    registry_heap: str = "256m"

    # Producers.
    delivery_timeout_ms: int = 30_000
    linger_ms: int = 5

    # Key of the reporter pseudonym (HMAC). The default is for local use only:
    # production sets its own secret, or pseudonyms are guessable from contacts.
    pseudonym_key: SecretStr = SecretStr("veille-local-development-key")
    # Key of dispatch ids (HMAC): an agency proves it was dispatched an incident by quoting
    # the dispatch id in its status updates; only the router can derive one. Local default
    # for the demo; production sets its own secret.
    dispatch_key: SecretStr = SecretStr("veille-local-dispatch-key")

    # Territory (municipalities, agencies, service areas, routing rules).
    territory_dir: Path = Field(
        default_factory=lambda: Path(__file__).parent / "territories" / "example"
    )

    # ClickHouse: empty URL means the embedded chDB store under state_dir.
    clickhouse_url: str = ""
    clickhouse_database: str = "veille"
    sink_batch_rows: int = 10_000
    sink_batch_seconds: float = 0.25  # bounds the latency a batch adds (p99 target 1 s)
    # Static membership of `veille sink run` (as the router's): "" = derived from the topic
    # prefix, group, host name and state dir; the session bounds the wait for a lost sink.
    sink_instance_id: str = ""
    sink_session_seconds: float = 20.0

    # Incident-level rows expire (GDPR minimisation); aggregate indicators are kept longer.
    store_incident_ttl_days: int = 400
    store_aggregate_ttl_days: int = 3650

    # Metrics/HTTP ports (0 = any free port). Containers set the host to 0.0.0.0.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    # The sink's web console (veille/reads/console/access.py): required when it is bound to anything but
    # the loopback interface; a bearer token, or basic-auth user and password.
    console_token: str = ""
    console_user: str = ""
    console_password: str = ""
    # The console's ops page reads dead letters and unroutable events over time from this
    # Prometheus (the router's counters; the store never sees refused events). Empty: page disabled.
    prometheus_url: str = ""
    intake_port: int = 8080
    # HTTP intake: anonymous incident reports only for these INSEE codes (comma-separated;
    # empty = every request needs an API key); request quotas per key and per anonymous client.
    intake_anonymous_municipalities: str = ""
    intake_rate_per_second: float = 50.0
    intake_burst: int = 200
    intake_anonymous_rate_per_second: float = 1.0
    intake_anonymous_burst: int = 20
    # The relays' form (producers/relay): the key encrypting its session cookies (Fernet, 32
    # url-safe base64 bytes; "" = one generated in state_dir, so sessions survive restarts),
    # whether the cookie is sent over HTTPS only (true in production), and a session's length.
    relay_session_key: SecretStr = SecretStr("")
    relay_cookie_secure: bool = False
    relay_session_hours: float = 12.0

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
        info = self.broker_dir / BROKER_STATE_FILE
        if info.exists():
            return str(json.loads(info.read_text())["bootstrap"])
        return "127.0.0.1:9092"

    def kafka_tools(self) -> Path | None:
        """The directory of Kafka's jars for its admin tools: ``kafka_tools_dir``, else the
        local broker's (recorded in its broker.json), else None."""
        if self.kafka_tools_dir:
            return Path(self.kafka_tools_dir)
        try:
            libs = json.loads((self.broker_dir / BROKER_STATE_FILE).read_text()).get("libs_dir")
        except (OSError, ValueError, AttributeError):
            return None
        return Path(libs) if isinstance(libs, str) and libs else None

    def _local_broker_admin(self) -> tuple[str, str] | None:
        """The local broker's superuser, if it runs with auth and is the broker we talk to.

        Never when bootstrap_servers names another cluster: the local admin password must
        not be offered to a remote broker.
        """
        try:
            state = json.loads((self.broker_dir / BROKER_STATE_FILE).read_text())
            if not state.get("auth"):
                return None
            if self.bootstrap_servers and self.bootstrap_servers != state.get("bootstrap"):
                return None
            creds = json.loads((self.broker_dir / ADMIN_CREDENTIALS_FILE).read_text())
            return str(creds["username"]), str(creds["password"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def kafka_credentials(self) -> KafkaCredentials:
        """The one resolution of Kafka security, shared by librdkafka and faust clients.

        Explicit VEILLE_SECURITY_PROTOCOL / VEILLE_SASL_USERNAME / VEILLE_SASL_PASSWORD win;
        with no protocol set, a local broker with auth makes it SASL_PLAINTEXT, as its admin
        unless a user name is given (the demo runs the router and sink as their own users).
        """
        protocol = self.security_protocol.upper()
        local = None if protocol and self.sasl_username else self._local_broker_admin()
        if not protocol:
            protocol = "SASL_PLAINTEXT" if local else "PLAINTEXT"
        if not protocol.startswith("SASL_"):
            return KafkaCredentials(protocol, "", "", "")
        username, password = self.sasl_username, self.sasl_password.get_secret_value()
        if not username and local:
            username, password = local
        return KafkaCredentials(protocol, self.sasl_mechanism, username, password)

    def with_kafka_user(self, username: str, password: str) -> Settings:
        """A copy that connects as ``username`` (same protocol resolution)."""
        return self.model_copy(update={"sasl_username": username, "sasl_password": SecretStr(password)})

    def kafka_client_config(self) -> dict[str, str | int | float | bool]:
        """librdkafka connection + security settings shared by every confluent-kafka client."""
        conf: dict[str, str | int | float | bool] = {"bootstrap.servers": self.kafka_bootstrap()}
        creds = self.kafka_credentials()
        if creds.protocol != "PLAINTEXT":
            conf["security.protocol"] = creds.protocol
        if creds.mechanism:
            conf["sasl.mechanism"] = creds.mechanism
            conf["sasl.username"] = creds.username
            conf["sasl.password"] = creds.password
        if self.ssl_ca_location and creds.protocol in ("SSL", "SASL_SSL"):
            conf["ssl.ca.location"] = self.ssl_ca_location
        return conf


class KafkaCredentials(NamedTuple):
    protocol: str  # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    mechanism: str  # "" unless SASL
    username: str
    password: str

    def __repr__(self) -> str:  # never the password, even in a traceback
        return f"KafkaCredentials({self.protocol}, {self.mechanism}, user={self.username!r})"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
