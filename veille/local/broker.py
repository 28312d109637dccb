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

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from veille.config import ADMIN_CREDENTIALS_FILE, BROKER_STATE_FILE, Settings, get_settings
from veille.java import JavaNotFound, find_java
from veille.local import maven
from veille.local.broker_config import (
    ADMIN_USER,
    SASL_MECHANISM,
    BrokerError,
    ListenerOptions,
    log4j2_properties,
    render_properties,
    server_properties,
)
from veille.local.broker_info import BrokerInfo, BrokerStatus
from veille.local.broker_storage import (
    ensure_admin_credentials,
    format_storage,
    meta_cluster_id,
    random_cluster_id,
    read_admin_credentials,
)
from veille.local.processes import (
    PortInUse,
    children,
    choose_ports,
    now,
    pid_alive,
    port_is_free,
    set_parent_death_signal,
    tail,
    terminate,
    wait_gone,
)
from veille.statedir import StateDir, process_argv, write_private

POM_PATH = Path(__file__).resolve().parents[2] / "deploy" / "broker" / "pom.xml"
MIN_JAVA = 17
STARTUP_TIMEOUT = 60.0
EXIT_NOT_RUNNING = 3


# --------------------------------------------------------------------------- helpers


def pom_kafka_version(pom: Path = POM_PATH) -> str:
    try:
        return maven.pom_property(pom, "kafka.version")
    except maven.FetchError as exc:
        raise BrokerError(str(exc)) from None


def check_java() -> str:
    """A Java 17+ runtime (see veille.java), or BrokerError saying what was found."""
    try:
        return find_java(MIN_JAVA)[0]
    except JavaNotFound as exc:
        raise BrokerError(f"the local Kafka broker needs {exc}") from None


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
        return self.dir / BROKER_STATE_FILE

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
        return ensure_admin_credentials(self.dir)

    # ---- fetch

    def is_fetched(self) -> bool:
        return maven.is_fetched(self.libs_dir, self.pom)

    def fetch(self, force: bool = False) -> Path:
        """Copy the broker jars into the cache (once per pom content); return the libs dir."""
        libs = self.libs_dir
        if not force and self.is_fetched():
            return libs
        check_java()
        libs.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="libs.", dir=libs.parent))
        try:
            maven.copy_dependencies(self.pom, tmp, f"the Kafka {self.kafka_version} broker jars",
                                    "-DincludeScope=runtime")
            jars = sorted(p.name for p in tmp.glob("*.jar"))
            if not any(name.startswith("kafka_2.13-") for name in jars):
                raise BrokerError(f"Maven ran but no kafka_2.13 jar in {tmp}")
            if libs.exists():
                shutil.rmtree(libs)
            tmp.rename(libs)
        except maven.FetchError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BrokerError(str(exc)) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        maven.mark_fetched(libs, self.pom, kafka_version=self.kafka_version, jars=jars)
        return libs

    # ---- state file

    def _is_our_process(self, pid: int | None) -> bool:
        """``pid`` is alive and is the ``java kafka.Kafka`` of *this* state dir."""
        if not pid or not pid_alive(pid):
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
            if not pid_alive(pid):
                raise BrokerError(
                    f"the Kafka broker (pid {pid}) exited during startup; "
                    f"{self.stdout_file}:\n{tail(self.stdout_file)}\n"
                    f"{self.log_dir / 'server.log'}:\n{tail(self.log_dir / 'server.log')}"
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
        try:
            client_port, controller_port = choose_ports(port or self.settings.broker_port or None,
                                                        state.get("port"), state.get("controller_port"))
        except PortInUse as exc:
            raise BrokerError(str(exc)) from None
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
        write_private(self.properties_file, render_properties(server_properties(opts)))
        self.log4j_file.write_text(log4j2_properties(self.log_dir))
        classpath = f"{libs}/*"

        cluster_id = state.get("cluster_id") or ""
        formatted = False
        admin_scram = bool(state.get("admin_scram"))
        if needs_format:
            cluster_id = cluster_id or random_cluster_id()
            format_storage(java, classpath, self.log4j_file, self.properties_file, self.data_dir,
                           cluster_id, self._ensure_admin_credentials())
            formatted = True
            admin_scram = True
        else:
            cluster_id = cluster_id or meta_cluster_id(self.data_dir / "meta.properties")

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
            out_fh.write(f"\n--- {now()} starting on {bootstrap}\n".encode())
            out_fh.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out_fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=set_parent_death_signal if die_with_parent else None,
            )
        children[proc.pid] = proc
        new_state = {
            **state,
            "pid": proc.pid,
            "bootstrap": bootstrap,
            "port": client_port,
            "controller_port": controller_port,
            "cluster_id": cluster_id,
            "kafka_version": self.kafka_version,
            # Kafka's admin tools for the hub's commands (Settings.kafka_tools: quotas).
            "libs_dir": str(libs),
            "started_at": now(),
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
            terminate(proc.pid, 10.0)
            self._write_state({k: v for k, v in new_state.items() if k != "pid"})
            raise
        new_state["startup_seconds"] = round(time.monotonic() - spawned, 3)
        self._write_state(new_state)
        return self._info(new_state, formatted=formatted)

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
                    if not wait_gone(pid, 10.0):
                        raise BrokerError(f"pid {pid} survived SIGKILL")
                else:
                    terminate(pid, timeout)
            if "pid" in state:
                state.pop("pid")
                state["stopped_at"] = now()
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
