"""The local Apache Kafka broker (KRaft, one node) used by the tests, the demo and benchmarks.

Nothing is installed system-wide: ``fetch`` lets Maven copy the broker jars (version pinned
in ``deploy/broker/pom.xml``) into ``cache_dir/kafka-<version>/libs``, shared by every state
dir on the machine; ``start`` writes ``server.properties`` + a Log4j 2 config into
``state_dir/broker``, formats the storage once and runs ``java kafka.Kafka`` detached.
``broker.json`` in that directory records the PID, ports and bootstrap address; clients
read it through :meth:`veille.config.Settings.kafka_bootstrap`. The ports are kept across
stop/start so that an address a client cached stays valid after ``restart``.

Security (default, ``Settings.broker_auth``): the client listener is SASL_PLAINTEXT with
SCRAM-SHA-512 and the KRaft ``StandardAuthorizer`` denies whatever no ACL allows. The
superuser ``admin`` is written into the metadata when the storage is formatted; its random
password lives in ``admin-credentials.json`` (mode 0600) next to ``broker.json``, and
:meth:`veille.config.Settings.kafka_credentials` hands it to local clients. The controller
listener stays PLAINTEXT (its principal, ``User:ANONYMOUS``, must be a superuser for the
broker to talk to its own controller) and is bound to 127.0.0.1 only: anyone with a shell on
the machine could administer the local broker through it, which is acceptable for a
development broker and never how production is set up (deploy/kafka/).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from veille.config import Settings, get_settings
from veille.statedir import StateDir, process_argv

POM_PATH = Path(__file__).resolve().parents[1] / "deploy" / "broker" / "pom.xml"
MIN_JAVA = 17
STARTUP_TIMEOUT = 60.0
EXIT_NOT_RUNNING = 3
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
_FETCH_MARKER = ".fetched"
ADMIN_USER = "admin"
ADMIN_CREDENTIALS_FILE = "admin-credentials.json"
SASL_MECHANISM = "SCRAM-SHA-512"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
# The principal of the PLAINTEXT controller listener: the broker's own connection to the
# controller authenticates as nobody, so it must be a superuser.
CONTROLLER_PRINCIPAL = "User:ANONYMOUS"


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started or stopped."""


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class BrokerInfo:
    """A running local broker, as recorded in ``broker.json``."""

    pid: int
    bootstrap: str
    port: int
    controller_port: int
    cluster_id: str
    kafka_version: str
    started_at: str  # ISO 8601, UTC
    startup_seconds: float | None  # process spawn -> first metadata answer
    formatted: bool = False  # this start formatted the storage (first start of a state dir)
    already_running: bool = False  # start() found it running and did nothing
    auth: bool = False  # SASL/SCRAM + ACLs on the client listener


@dataclass(frozen=True)
class BrokerStatus:
    running: bool  # the recorded PID is our java kafka.Kafka process
    answering: bool  # it answered a metadata request
    pid: int | None
    bootstrap: str | None
    broker_dir: str
    started_at: str | None = None

    def describe(self) -> str:
        if not self.running:
            where = f" (last address {self.bootstrap})" if self.bootstrap else ""
            return f"broker not running{where}; state in {self.broker_dir}"
        health = "answering" if self.answering else "NOT answering"
        return (
            f"broker running, pid {self.pid}, {self.bootstrap}, {health}, "
            f"since {self.started_at}; state in {self.broker_dir}"
        )


@dataclass(frozen=True)
class ListenerOptions:
    """What ``server.properties`` is generated from: the single place to extend.

    ``client_protocol`` is PLAINTEXT (``--no-auth``) or SASL_PLAINTEXT: SCRAM on the client
    listener, which is also the inter-broker listener (so the broker logs in as
    ``admin_user``), and the StandardAuthorizer with deny-by-default.
    """

    port: int
    controller_port: int
    data_dir: Path
    host: str = "127.0.0.1"
    client_protocol: str = "PLAINTEXT"
    node_id: int = 1
    sasl_mechanism: str = SASL_MECHANISM
    admin_user: str = ADMIN_USER
    admin_password: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)  # last word, for tests/benchmarks


def _jaas_quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def server_properties(opts: ListenerOptions) -> dict[str, str]:
    """Broker + controller properties of the single-node KRaft cluster."""
    if opts.client_protocol not in ("PLAINTEXT", "SASL_PLAINTEXT"):
        raise BrokerError(
            f"client listener protocol {opts.client_protocol!r} is not supported by the local "
            "broker (PLAINTEXT or SASL_PLAINTEXT; TLS: see deploy/kafka/)"
        )
    client = f"CLIENT://{opts.host}:{opts.port}"
    controller = f"CONTROLLER://{opts.host}:{opts.controller_port}"
    props = {
        "process.roles": "broker,controller",
        "node.id": str(opts.node_id),
        "controller.quorum.voters": f"{opts.node_id}@{opts.host}:{opts.controller_port}",
        "listeners": f"{client},{controller}",
        "advertised.listeners": client,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "CLIENT",
        "listener.security.protocol.map": (f"CLIENT:{opts.client_protocol},CONTROLLER:PLAINTEXT"),
        "log.dirs": str(opts.data_dir),
        # One node: every internal topic has a single replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        # 50 partitions each by default: creating them makes the first consumer group or
        # transactional producer wait ~3 s; one node gains nothing from that many.
        "offsets.topic.num.partitions": "5",
        "transaction.state.log.num.partitions": "5",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "min.insync.replicas": "1",
        # The hub declares its topics (partitions, retention, compaction) explicitly;
        # a typo in a topic name must fail, not create a 1-partition topic.
        "auto.create.topics.enable": "false",
        # Tests and demos join groups constantly: no 3 s wait for more members.
        "group.initial.rebalance.delay.ms": "0",
    }
    if opts.client_protocol == "SASL_PLAINTEXT":
        if not opts.admin_password:
            raise BrokerError("SASL on the client listener needs the admin password")
        mech = opts.sasl_mechanism
        props.update({
            "sasl.enabled.mechanisms": mech,
            "sasl.mechanism.inter.broker.protocol": mech,
            f"listener.name.client.{mech.lower()}.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{_jaas_quote(opts.admin_user)}" password="{_jaas_quote(opts.admin_password)}";'
            ),
            "authorizer.class.name": AUTHORIZER,
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{opts.admin_user};{CONTROLLER_PRINCIPAL}",
        })  # fmt: skip
    props.update(opts.extra)
    return props


def render_properties(props: Mapping[str, str]) -> str:
    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("\n", "\\n")

    lines = ["# Generated by `veille broker start`; rewritten at every start."]
    lines += [f"{key}={esc(value)}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def log4j2_properties(log_dir: Path, level: str = "WARN") -> str:
    """Log4j 2 config: WARN and up to ``log_dir/server.log`` (10 MB x 3), nothing on stdout."""
    log = str(log_dir).replace("\\", "\\\\")
    return f"""\
# Generated by `veille broker start`.
status = error
name = veille-local-broker
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log}/server.log
appender.file.filePattern = {log}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 10MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
# One line per start/stop, to tell restarts apart when reading the log.
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


# --------------------------------------------------------------------------- helpers


def pom_kafka_version(pom: Path = POM_PATH) -> str:
    root = ET.parse(pom).getroot()
    node = root.find("m:properties/m:kafka.version", _POM_NS)
    if node is None or not (node.text or "").strip():
        raise BrokerError(f"{pom}: no <kafka.version> property")
    return (node.text or "").strip()


def java_executable() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise BrokerError(
            f"`java` not found: the local Kafka broker needs a Java {MIN_JAVA}+ runtime "
            "(e.g. apt-get install openjdk-17-jre-headless), or set JAVA_HOME"
        )
    return found


_java_checked: dict[str, int] = {}


def check_java() -> str:
    """The java executable, after checking it is at least Java 17 (cached per process)."""
    java = java_executable()
    if java not in _java_checked:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False)
        match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
        if not match:
            raise BrokerError(f"cannot read the Java version from `{java} -version`")
        major = int(match.group(1))
        if major == 1 and match.group(2):  # "1.8.0_392" style
            major = int(match.group(2))
        _java_checked[java] = major
    if _java_checked[java] < MIN_JAVA:
        raise BrokerError(f"{java} is Java {_java_checked[java]}; Kafka 4 needs Java {MIN_JAVA} or newer")
    return java


def random_cluster_id() -> str:
    """Same format as ``kafka-storage random-uuid``: 16 random bytes, URL-safe base64."""
    while True:
        cid = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the JVM's server sockets: a port in TIME_WAIT after a stop counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports (all held open together while picking)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
    return ports


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# Popen objects of the brokers this process started: kept so they can be reaped (a dead
# child stays a zombie, with an empty /proc cmdline, until its parent waits for it).
_children: dict[int, subprocess.Popen[bytes]] = {}


def _reap(pid: int) -> None:
    proc = _children.get(pid)
    if proc is not None and proc.poll() is not None:
        del _children[pid]


def _pid_alive(pid: int) -> bool:
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat.rpartition(")")[2].split()[0] != "Z"


def _set_parent_death_signal() -> None:  # runs in the child between fork and exec
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


# --------------------------------------------------------------------------- the broker


class LocalBroker(StateDir):
    """One single-node KRaft broker living in ``settings.broker_dir``."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.pom = POM_PATH

    # ---- paths

    @property
    def kafka_version(self) -> str:
        return pom_kafka_version(self.pom)

    @property
    def libs_dir(self) -> Path:
        return self.settings.cache_dir / f"kafka-{self.kafka_version}" / "libs"

    @property
    def dir(self) -> Path:
        return self.settings.broker_dir

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def log_dir(self) -> Path:
        return self.dir / "logs"

    @property
    def state_file(self) -> Path:
        return self.dir / "broker.json"

    @property
    def properties_file(self) -> Path:
        return self.dir / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.dir / "log4j2.properties"

    @property
    def stdout_file(self) -> Path:
        return self.log_dir / "stdout.log"

    @property
    def admin_credentials_file(self) -> Path:
        return self.dir / ADMIN_CREDENTIALS_FILE

    # ---- admin credentials

    def admin_credentials(self) -> tuple[str, str] | None:
        """(user, password) of the superuser, or None when this broker never had auth."""
        return read_admin_credentials(self.dir)

    def _ensure_admin_credentials(self) -> tuple[str, str]:
        found = self.admin_credentials()
        if found:
            return found
        password = secrets.token_urlsafe(24)
        _write_private(
            self.admin_credentials_file,
            json.dumps({"username": ADMIN_USER, "password": password, "mechanism": SASL_MECHANISM}),
        )
        return ADMIN_USER, password

    # ---- fetch

    def _pom_digest(self) -> str:
        return hashlib.sha256(self.pom.read_bytes()).hexdigest()

    def is_fetched(self) -> bool:
        marker = self.libs_dir / _FETCH_MARKER
        try:
            return json.loads(marker.read_text()).get("pom_sha256") == self._pom_digest()
        except (OSError, ValueError):
            return False

    def fetch(self, force: bool = False) -> Path:
        """Copy the broker jars into the cache (once per pom content); return the libs dir."""
        libs = self.libs_dir
        if not force and self.is_fetched():
            return libs
        mvn = shutil.which("mvn")
        if not mvn:
            raise BrokerError(
                "`mvn` not found: fetching the Kafka broker jars needs Apache Maven "
                "(e.g. apt-get install maven)"
            )
        check_java()
        libs.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="libs.", dir=libs.parent))
        try:
            cmd = [
                mvn,
                "-q",
                "-B",
                "-f",
                str(self.pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp}",
                "-DincludeScope=runtime",
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise BrokerError(
                    f"Maven could not fetch the Kafka {self.kafka_version} jars "
                    f"(exit {out.returncode}):\n{(out.stdout + out.stderr)[-4000:]}"
                )
            jars = sorted(p.name for p in tmp.glob("*.jar"))
            if not any(name.startswith("kafka_2.13-") for name in jars):
                raise BrokerError(f"Maven ran but no kafka_2.13 jar in {tmp}")
            if libs.exists():
                shutil.rmtree(libs)
            tmp.rename(libs)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        marker = {
            "pom_sha256": self._pom_digest(),
            "kafka_version": self.kafka_version,
            "jars": jars,
            "fetched_at": _now(),
        }
        (libs / _FETCH_MARKER).write_text(json.dumps(marker, indent=1))
        return libs

    # ---- state file

    def _is_our_process(self, pid: int | None) -> bool:
        """``pid`` is alive and is the ``java kafka.Kafka`` of *this* state dir."""
        if not pid or not _pid_alive(pid):
            return False
        argv = process_argv(pid)
        return b"kafka.Kafka" in argv and str(self.properties_file).encode() in argv

    def _client_config(self, bootstrap: str) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 200,
            "log_level": 0,  # "connection refused" while starting is expected, not news
            "error_cb": lambda _err: None,
        }
        # Its own superuser, whatever the caller's settings say: start/status must work
        # for a broker of another state dir too.
        creds = self.admin_credentials() if self._read_state().get("auth") else None
        if creds:
            conf.update({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": SASL_MECHANISM,
                         "sasl.username": creds[0], "sasl.password": creds[1]})
        return conf

    def answering(self, bootstrap: str, timeout: float = 2.0) -> bool:
        """Whether a broker at ``bootstrap`` answers a metadata request within ``timeout``."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(self._client_config(bootstrap))
        try:
            return bool(admin.list_topics(timeout=timeout).brokers)
        except KafkaException:
            return False

    def _wait_answering(self, pid: int, bootstrap: str, timeout: float) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(self._client_config(bootstrap))
        deadline = time.monotonic() + timeout
        while True:
            if not _pid_alive(pid):
                raise BrokerError(
                    f"the Kafka broker (pid {pid}) exited during startup; "
                    f"{self.stdout_file}:\n{_tail(self.stdout_file)}\n"
                    f"{self.log_dir / 'server.log'}:\n{_tail(self.log_dir / 'server.log')}"
                )
            try:
                if admin.list_topics(timeout=0.5).brokers:
                    return
            except KafkaException:
                pass
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"the Kafka broker (pid {pid}) did not answer on {bootstrap} within "
                    f"{timeout:.0f} s; see {self.log_dir}"
                )
            time.sleep(0.1)

    def _info(self, state: Mapping[str, Any], **overrides: Any) -> BrokerInfo:
        names = BrokerInfo.__dataclass_fields__
        values = {k: v for k, v in state.items() if k in names}
        values.update(overrides)
        return BrokerInfo(**values)

    # ---- lifecycle

    def start(
        self,
        port: int | None = None,
        *,
        timeout: float = STARTUP_TIMEOUT,
        die_with_parent: bool = False,
        extra_properties: Mapping[str, str] | None = None,
        auth: bool | None = None,
        wait: bool = True,
    ) -> BrokerInfo:
        """Start the broker (or return the one already running) and wait until it answers.

        Port choice: ``port``, else ``settings.broker_port``, else the port recorded by the
        previous start of this state dir if still free, else a free loopback port.
        ``die_with_parent`` SIGTERMs the broker when the calling thread exits (test runs).
        ``auth`` (default ``settings.broker_auth``): SASL/SCRAM + ACLs, see the module doc.
        A running broker is returned as it is, whatever ``auth`` says. ``wait=False`` returns
        once the process is spawned (cluster nodes answer only once a quorum is up).
        """
        with self._lock():
            state = self._read_state()
            pid = state.get("pid")
            if pid is not None and self._is_our_process(pid):
                if wait:
                    self._wait_answering(pid, state["bootstrap"], timeout)
                return self._info(state, already_running=True)
            use_auth = self.settings.broker_auth if auth is None else auth
            return self._start_locked(state, port, timeout, die_with_parent, dict(extra_properties or {}),
                                      use_auth, wait)

    def _choose_ports(self, state: Mapping[str, Any], port: int | None) -> tuple[int, int]:
        wanted = port or self.settings.broker_port or None
        if wanted is not None and not port_is_free(wanted):
            raise BrokerError(f"port {wanted} on 127.0.0.1 is already in use")
        recorded, recorded_ctl = state.get("port"), state.get("controller_port")
        if wanted is None and recorded and port_is_free(recorded):
            wanted = recorded
        picks = iter(free_ports(2))
        client = wanted or next(picks)
        if recorded_ctl and recorded_ctl != client and port_is_free(recorded_ctl):
            controller = recorded_ctl
        else:
            controller = next(p for p in picks if p != client)
        return client, controller

    def _start_locked(
        self,
        state: dict[str, Any],
        port: int | None,
        timeout: float,
        die_with_parent: bool,
        extra: dict[str, str],
        auth: bool,
        wait: bool = True,
    ) -> BrokerInfo:
        java = check_java()
        libs = self.fetch()
        client_port, controller_port = self._choose_ports(state, port)
        for path in (self.data_dir, self.log_dir):
            path.mkdir(parents=True, exist_ok=True)
        needs_format = not (self.data_dir / "meta.properties").exists()
        if auth and not needs_format and not state.get("admin_scram"):
            raise BrokerError(
                f"{self.data_dir} was formatted without authentication, so it has no admin user: "
                "start it with --no-auth, or remove the state dir to start afresh with auth"
            )
        user, password = self._ensure_admin_credentials() if auth else (ADMIN_USER, "")
        opts = ListenerOptions(client_port, controller_port, self.data_dir, extra=extra,
                               client_protocol="SASL_PLAINTEXT" if auth else "PLAINTEXT",
                               admin_user=user, admin_password=password)
        # It holds the admin password (inter-broker JAAS login) when auth is on.
        _write_private(self.properties_file, render_properties(server_properties(opts)))
        self.log4j_file.write_text(log4j2_properties(self.log_dir))
        classpath = f"{libs}/*"

        cluster_id = state.get("cluster_id") or ""
        formatted = False
        admin_scram = bool(state.get("admin_scram"))
        if needs_format:
            cluster_id = cluster_id or random_cluster_id()
            cmd = [
                java,
                f"-Dlog4j2.configurationFile={self.log4j_file}",
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(self.properties_file),
            ]
            # Formatting always creates the superuser, so that a broker first run with
            # --no-auth can later be restarted with auth. The password shows in this
            # short-lived process's argv: StorageTool has no other way to take it.
            user, password = self._ensure_admin_credentials()
            cmd += ["--add-scram", f"{SASL_MECHANISM}=[name={user},password={password}]"]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise BrokerError(
                    f"formatting {self.data_dir} failed:\n{out.stdout.replace(password, '***')}"
                    f"{out.stderr.replace(password, '***')}"
                )
            formatted = True
            admin_scram = True
        else:
            cluster_id = cluster_id or _meta_cluster_id(self.data_dir / "meta.properties")

        bootstrap = f"127.0.0.1:{client_port}"
        cmd = [
            java,
            f"-Xmx{self.settings.broker_heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            f"-XX:ErrorFile={self.log_dir}/hs_err_pid%p.log",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_file}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(self.properties_file),
        ]
        spawned = time.monotonic()
        with open(self.stdout_file, "ab") as out_fh:
            out_fh.write(f"\n--- {_now()} starting on {bootstrap}\n".encode())
            out_fh.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out_fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_set_parent_death_signal if die_with_parent else None,
            )
        _children[proc.pid] = proc
        new_state = {
            **state,
            "pid": proc.pid,
            "bootstrap": bootstrap,
            "port": client_port,
            "controller_port": controller_port,
            "cluster_id": cluster_id,
            "kafka_version": self.kafka_version,
            "started_at": _now(),
            "startup_seconds": None,
            "log": str(self.log_dir / "server.log"),
            "auth": auth,
            "sasl_mechanism": SASL_MECHANISM if auth else None,
            "admin_scram": admin_scram,
        }
        self._write_state(new_state)
        if not wait:
            return self._info(new_state, formatted=formatted)
        try:
            self._wait_answering(proc.pid, bootstrap, timeout)
        except BaseException:
            self._terminate(proc.pid, 10.0)
            self._write_state({k: v for k, v in new_state.items() if k != "pid"})
            raise
        new_state["startup_seconds"] = round(time.monotonic() - spawned, 3)
        self._write_state(new_state)
        return self._info(new_state, formatted=formatted)

    def _terminate(self, pid: int, timeout: float) -> bool:
        """SIGTERM, wait, SIGKILL. Returns whether it had to kill."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if self._wait_gone(pid, timeout):
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self._wait_gone(pid, 10.0)
        return True

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        proc = _children.get(pid)
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            _children.pop(pid, None)
            return True
        deadline = time.monotonic() + timeout
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self, timeout: float = 30.0) -> bool:
        """Graceful stop (SIGTERM, SIGKILL after ``timeout``). False if it was not running."""
        return self._stop(signal.SIGTERM, timeout)

    def kill(self) -> bool:
        """SIGKILL the broker (fault tests: no controlled shutdown, no flush)."""
        return self._stop(signal.SIGKILL, 0.0)

    def _stop(self, sig: signal.Signals, timeout: float) -> bool:
        with self._lock():
            state = self._read_state()
            pid = state.get("pid")
            was_running = self._is_our_process(pid)
            if was_running:
                assert pid is not None
                if sig == signal.SIGKILL:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    if not self._wait_gone(pid, 10.0):
                        raise BrokerError(f"pid {pid} survived SIGKILL")
                else:
                    self._terminate(pid, timeout)
            if "pid" in state:
                state.pop("pid")
                state["stopped_at"] = _now()
                self._write_state(state)
            return was_running

    def restart(self, timeout: float = 30.0) -> BrokerInfo:
        """Stop, then start again on the same ports (clients keep their cached address)."""
        state = self._read_state()
        port = state.get("port") or None
        self.stop(timeout)
        deadline = time.monotonic() + 10.0
        while port and not port_is_free(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        auth = state.get("auth")
        return self.start(port=port, auth=None if auth is None else bool(auth))

    def status(self, timeout: float = 2.0) -> BrokerStatus:
        state = self._read_state()
        pid = state.get("pid")
        running = self._is_our_process(pid)
        bootstrap = state.get("bootstrap")
        return BrokerStatus(
            running=running,
            answering=bool(running and bootstrap and self.answering(bootstrap, timeout)),
            pid=pid if running else None,
            bootstrap=bootstrap,
            broker_dir=str(self.dir),
            started_at=state.get("started_at") if running else None,
        )


def read_admin_credentials(broker_dir: Path) -> tuple[str, str] | None:
    """(user, password) from ``broker_dir/admin-credentials.json``, None if absent or unreadable."""
    try:
        data = json.loads((broker_dir / ADMIN_CREDENTIALS_FILE).read_text())
        return str(data["username"]), str(data["password"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, never briefly wider."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)  # the umask cannot widen it, but an existing tmp file could
    tmp.replace(path)


def _meta_cluster_id(meta: Path) -> str:
    for line in meta.read_text().splitlines():
        if line.startswith("cluster.id="):
            return line.split("=", 1)[1].strip()
    return ""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# --------------------------------------------------------------------------- CLI


def _reporting_errors(func: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except BrokerError as exc:
            print(f"veille broker: error: {exc}", file=sys.stderr)
            return 1

    return wrapper


@_reporting_errors
def _cmd_fetch(args: argparse.Namespace) -> int:
    broker = LocalBroker(get_settings())
    began = time.monotonic()
    cached = not args.force and broker.is_fetched()
    libs = broker.fetch(force=args.force)
    verb = "already cached in" if cached else "fetched into"
    print(f"Kafka {broker.kafka_version} jars {verb} {libs} ({time.monotonic() - began:.1f} s)")
    return 0


@_reporting_errors
def _cmd_start(args: argparse.Namespace) -> int:
    from veille import cluster

    if args.nodes > 1 or cluster.LocalCluster.exists(get_settings()):
        return cluster.cmd_start(get_settings(), max(args.nodes, 3), args.timeout, args.auth)
    broker = LocalBroker(get_settings())
    info = broker.start(port=args.port, timeout=args.timeout, auth=args.auth)
    if args.json:
        print(json.dumps(asdict(info)))
    elif info.already_running:
        print(f"broker already running: pid {info.pid}, {info.bootstrap}{_auth_note(info)}")
    else:
        print(f"broker started: pid {info.pid}, {info.bootstrap} ({info.startup_seconds or 0:.1f} s)"
              f"{_auth_note(info)}")
    if info.auth:
        print(f"SASL/SCRAM ({SASL_MECHANISM}) + ACLs on; superuser '{ADMIN_USER}', password in "
              f"{broker.admin_credentials_file} (local veille commands use it by themselves)")
    return 0


def _auth_note(info: BrokerInfo) -> str:
    return ", SASL_PLAINTEXT" if info.auth else ", PLAINTEXT (no authentication)"


@_reporting_errors
def _cmd_stop(args: argparse.Namespace) -> int:
    from veille import cluster

    if cluster.LocalCluster.exists(get_settings()):
        return cluster.cmd_stop(get_settings(), args.timeout)
    stopped = LocalBroker(get_settings()).stop(timeout=args.timeout)
    print("broker stopped" if stopped else "broker was not running")
    return 0


@_reporting_errors
def _cmd_restart(args: argparse.Namespace) -> int:
    from veille import cluster

    if cluster.LocalCluster.exists(get_settings()):
        return cluster.cmd_restart(get_settings(), args.timeout)
    info = LocalBroker(get_settings()).restart(timeout=args.timeout)
    print(f"broker restarted: pid {info.pid}, {info.bootstrap} ({info.startup_seconds or 0:.1f} s)")
    return 0


@_reporting_errors
def _cmd_status(args: argparse.Namespace) -> int:
    from veille import cluster

    if cluster.LocalCluster.exists(get_settings()):
        return cluster.cmd_status(get_settings(), args.json)
    st = LocalBroker(get_settings()).status()
    print(json.dumps(asdict(st)) if args.json else st.describe())
    return 0 if st.running else EXIT_NOT_RUNNING


def add_commands(sub: Any) -> None:
    parser = sub.add_parser(
        "broker",
        help="run the local Kafka broker (KRaft, one node) for the demo and tests",
        description=(
            "Local Apache Kafka broker in KRaft mode (one node, broker+controller). Jars go "
            "to VEILLE_CACHE_DIR, data/logs/broker.json to VEILLE_STATE_DIR/broker. Needs "
            f"Java {MIN_JAVA}+ and Maven (for fetch)."
        ),
    )
    cmds = parser.add_subparsers(dest="broker_command", metavar="ACTION", required=True)

    p = cmds.add_parser(
        "fetch",
        help="download the Kafka jars into the cache (skipped when cached)",
        description="Run Maven on deploy/broker/pom.xml to copy the Kafka broker jars into "
        "the cache dir. Done once per machine; `start` does it when needed.",
    )
    p.add_argument("--force", action="store_true", help="fetch again even if cached")
    p.set_defaults(func=_cmd_fetch)

    p = cmds.add_parser(
        "start",
        help="start the broker in the background and wait until it answers",
        description="Start the broker detached (or report the one already running). The "
        "storage is formatted on first start; the port of the previous start is reused.",
    )
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help="client port on 127.0.0.1 (default: previous one, else a free one)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=STARTUP_TIMEOUT,
        help="seconds to wait for the broker to answer (default %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print the broker info as JSON")
    p.add_argument("--nodes", type=int, default=1,
                   help="1 (default): the single-node broker; 3: a local KRaft cluster of combined "
                        "broker+controller nodes, replication factor 3, min.insync.replicas 2")
    p.add_argument(
        "--no-auth",
        dest="auth",
        action="store_false",
        default=None,
        help="PLAINTEXT client listener, no SASL and no ACLs (default: VEILLE_BROKER_AUTH, on)",
    )
    p.set_defaults(func=_cmd_start)

    p = cmds.add_parser(
        "stop",
        help="stop the broker gracefully (SIGTERM, then SIGKILL)",
        description="Send SIGTERM to the recorded broker process and wait; SIGKILL after "
        "--timeout. Data and ports are kept for the next start.",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL (default %(default)s)")
    p.set_defaults(func=_cmd_stop)

    p = cmds.add_parser(
        "restart",
        help="stop and start again on the same port",
        description="Graceful stop then start on the same ports, so clients keep working.",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds before SIGKILL when stopping (default %(default)s)",
    )
    p.set_defaults(func=_cmd_restart)

    p = cmds.add_parser(
        "status",
        help="tell whether the broker runs and answers (exit 0 running, 3 not)",
        description="Print whether the recorded broker process runs and answers a metadata "
        f"request. Exit status 0 when running, {EXIT_NOT_RUNNING} when not.",
    )
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=_cmd_status)


def main(argv: list[str] | None = None) -> int:
    """``python -m veille.broker ...``: the broker commands alone (no other component)."""
    parser = argparse.ArgumentParser(prog="python -m veille.broker")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["broker", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
