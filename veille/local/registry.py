"""The local schema registry: Apicurio Registry serving the Confluent API, like the local broker.

``fetch`` lets Maven copy ``apicurio-registry-app-<version>-all.tar.gz`` (version pinned in
``deploy/registry/pom.xml``) into ``cache_dir`` and unpacks it to
``cache_dir/apicurio-registry-<version>`` (``quarkus-run.jar`` + ``lib/``), shared by every
state dir on the machine. ``start`` runs ``java -jar quarkus-run.jar`` detached with a Java 21
or newer found on this machine (``JAVA_HOME``, ``PATH``, then the system's JVM directories;
Apicurio 3 refuses older ones), bound to 127.0.0.1 only: the HTTP API (the Confluent API is
under ``/apis/ccompat/v7``) and the management interface (health, metrics) on two free ports
kept across restarts, OpenTelemetry export off. ``registry.json`` in
``state_dir/registry`` records the PID, ports and URL.

Storage: H2 in a file under the state dir (``registry/data``). Schemas and their ids survive
a restart, which is the point (ids are written into every Confluent-framed message), and
the registry stays independent of the broker: the ``kafkasql`` storage would make the
registry unable to start without Kafka, need its own principal and ACLs on a SASL broker,
and replay its topic at every start. Production runs a shared registry with PostgreSQL (or
kafkasql) storage; the hub only needs its URL (``VEILLE_SCHEMA_REGISTRY_URL``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from veille.config import Settings, get_settings
from veille.java import JavaNotFound, find_java
from veille.local import maven
from veille.local.processes import (
    PortInUse,
    children,
    choose_ports,
    now,
    pid_alive,
    reporting,
    set_parent_death_signal,
    tail,
    terminate,
)
from veille.statedir import StateDir, process_argv

POM_PATH = Path(__file__).resolve().parents[2] / "deploy" / "registry" / "pom.xml"
MIN_JAVA = 21
STARTUP_TIMEOUT = 120.0
EXIT_NOT_RUNNING = 3
CCOMPAT_PATH = "/apis/ccompat/v7"


class RegistryError(RuntimeError):
    """The local registry could not be fetched, started or stopped."""


def registry_java() -> tuple[str, int]:
    """(java, major) of a Java 21+ for Apicurio 3, or RegistryError saying what was found."""
    try:
        return find_java(MIN_JAVA)
    except JavaNotFound as exc:
        raise RegistryError(f"Apicurio Registry needs {exc}") from exc


@dataclass(frozen=True)
class RegistryInfo:
    pid: int
    url: str  # base of the Confluent API, e.g. http://127.0.0.1:PORT/apis/ccompat/v7
    port: int
    management_port: int
    version: str
    java: str
    started_at: str
    startup_seconds: float | None
    already_running: bool = False


@dataclass(frozen=True)
class RegistryStatus:
    running: bool
    answering: bool
    pid: int | None
    url: str | None
    registry_dir: str
    started_at: str | None = None

    def describe(self) -> str:
        if not self.running:
            return f"registry not running; state in {self.registry_dir}"
        health = "answering" if self.answering else "NOT answering"
        return (f"registry running, pid {self.pid}, {self.url}, {health}, since {self.started_at}; "
                f"state in {self.registry_dir}")


# --------------------------------------------------------------------------- the registry


def pom_registry_version(pom: Path = POM_PATH) -> str:
    try:
        return maven.pom_property(pom, "apicurio.version")
    except maven.FetchError as exc:
        raise RegistryError(str(exc)) from None


def registry_answering(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (OSError, ValueError):
        return False


class LocalRegistry(StateDir):
    """One Apicurio Registry living in ``settings.state_dir/registry``."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.pom = POM_PATH

    @property
    def version(self) -> str:
        return pom_registry_version(self.pom)

    @property
    def app_dir(self) -> Path:
        return self.settings.cache_dir / f"apicurio-registry-{self.version}"

    @property
    def dir(self) -> Path:
        return self.settings.state_dir / "registry"

    @property
    def state_file(self) -> Path:
        return self.dir / "registry.json"

    @property
    def log_file(self) -> Path:
        return self.dir / "logs" / "registry.log"

    # ---- fetch

    def is_fetched(self) -> bool:
        return maven.is_fetched(self.app_dir, self.pom) and (self.app_dir / "quarkus-run.jar").is_file()

    def fetch(self, force: bool = False) -> Path:
        """Download (Maven) and unpack the registry into the cache once; return its dir."""
        if not force and self.is_fetched():
            return self.app_dir
        self.app_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="apicurio.", dir=self.app_dir.parent))
        try:
            maven.copy_dependencies(self.pom, tmp / "dl", f"Apicurio Registry {self.version}")
            archives = sorted((tmp / "dl").glob("apicurio-registry-app-*.tar.gz"))
            if not archives:
                raise RegistryError(f"Maven ran but no apicurio-registry-app archive in {tmp / 'dl'}")
            app = tmp / "app"
            with tarfile.open(archives[0]) as tar:
                tar.extractall(app, filter="data")
            if not (app / "quarkus-run.jar").is_file():
                raise RegistryError(f"{archives[0].name} has no quarkus-run.jar")
            maven.mark_fetched(app, self.pom, version=self.version)
            if self.app_dir.exists():
                shutil.rmtree(self.app_dir)
            app.rename(self.app_dir)
        except maven.FetchError as exc:
            raise RegistryError(str(exc)) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self.app_dir

    # ---- state

    def _marker(self) -> str:
        return f"-Dveille.registry.dir={self.dir}"

    def _is_our_process(self, pid: int | None) -> bool:
        """``pid`` is alive and is the registry JVM of *this* state dir."""
        if not pid or not pid_alive(pid):
            return False
        argv = process_argv(pid)
        return self._marker().encode() in argv

    def command(self, java: str, port: int, management_port: int) -> list[str]:
        db = self.dir / "data" / "registry"
        props = {
            "quarkus.http.host": "127.0.0.1",
            "quarkus.http.port": str(port),
            "quarkus.management.host": "127.0.0.1",
            "quarkus.management.port": str(management_port),
            "quarkus.otel.sdk.disabled": "true",
            "apicurio.storage.kind": "sql",
            "apicurio.storage.sql.kind": "h2",
            "apicurio.datasource.url": f"jdbc:h2:file:{db}",
            # Defaults are sized for a server (20 idle connections); one developer needs few.
            "apicurio.datasource.jdbc.initial-size": "2",
            "apicurio.datasource.jdbc.min-size": "2",
            "apicurio.datasource.jdbc.max-size": "10",
            "quarkus.log.console.level": "WARN",
        }
        return [java, f"-Xmx{self.settings.registry_heap}", "-XX:+ExitOnOutOfMemoryError",
                f"-XX:ErrorFile={self.log_file.parent}/hs_err_pid%p.log", self._marker(),
                *(f"-D{k}={v}" for k, v in props.items()),
                "-jar", str(self.app_dir / "quarkus-run.jar")]

    def start(self, port: int | None = None, *, timeout: float = STARTUP_TIMEOUT,
              die_with_parent: bool = False) -> RegistryInfo:
        """Start the registry (or return the running one) and wait until its API answers."""
        java, _major = registry_java()  # refuse before fetching 160 MB for nothing
        with self._lock():
            state = self._read_state()
            if self._is_our_process(state.get("pid")):
                self._wait(state["pid"], state["url"], timeout)
                return self._info(state, already_running=True)
            app = self.fetch()
            try:
                http, mgmt = choose_ports(port or self.settings.registry_port or None,
                                          state.get("port"), state.get("management_port"))
            except PortInUse as exc:
                raise RegistryError(str(exc)) from None
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            url = f"http://127.0.0.1:{http}{CCOMPAT_PATH}"
            spawned = time.monotonic()
            with open(self.log_file, "ab") as out:
                out.write(f"\n--- {now()} starting on {url}\n".encode())
                out.flush()
                proc = subprocess.Popen(
                    self.command(java, http, mgmt), cwd=app, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=set_parent_death_signal if die_with_parent else None)
            children[proc.pid] = proc
            new = {**state, "pid": proc.pid, "url": url, "port": http, "management_port": mgmt,
                   "version": self.version, "java": java, "started_at": now(), "startup_seconds": None,
                   "log": str(self.log_file)}
            self._write_state(new)
            try:
                self._wait(proc.pid, url, timeout)
            except BaseException:
                self._terminate(proc.pid, 10.0)
                self._write_state({k: v for k, v in new.items() if k != "pid"})
                raise
            new["startup_seconds"] = round(time.monotonic() - spawned, 3)
            self._write_state(new)
            return self._info(new)

    def _info(self, state: Mapping[str, Any], **overrides: Any) -> RegistryInfo:
        names = RegistryInfo.__dataclass_fields__
        return RegistryInfo(**{**{k: v for k, v in state.items() if k in names}, **overrides})

    def _wait(self, pid: int, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not registry_answering(url, 1.0):
            if not pid_alive(pid):
                raise RegistryError(f"the registry (pid {pid}) exited during startup; "
                                    f"{self.log_file}:\n{tail(self.log_file)}")
            if time.monotonic() > deadline:
                raise RegistryError(f"the registry (pid {pid}) did not answer on {url} within "
                                    f"{timeout:.0f} s; see {self.log_file}")
            time.sleep(0.2)

    def _terminate(self, pid: int, timeout: float) -> None:
        terminate(pid, timeout)
        if pid_alive(pid):
            raise RegistryError(f"pid {pid} survived SIGKILL")

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM (SIGKILL after ``timeout``) the recorded process. False if not running."""
        with self._lock():
            state = self._read_state()
            pid = state.get("pid")
            running = self._is_our_process(pid)
            if running:
                self._terminate(int(pid), timeout)  # type: ignore[arg-type]
            if "pid" in state:
                state.pop("pid")
                state["stopped_at"] = now()
                self._write_state(state)
            return running

    def status(self, timeout: float = 2.0) -> RegistryStatus:
        state = self._read_state()
        pid = state.get("pid")
        running = self._is_our_process(pid)
        url = state.get("url")
        return RegistryStatus(running, bool(running and url and registry_answering(url, timeout)),
                              pid if running else None, url, str(self.dir),
                              state.get("started_at") if running else None)

    def url(self) -> str | None:
        """The Confluent API base URL of the running local registry, if any."""
        state = self._read_state()
        return str(state["url"]) if self._is_our_process(state.get("pid")) else None


# --------------------------------------------------------------------------- CLI


_reporting_errors = reporting("registry", RegistryError)


@_reporting_errors
def _cmd_fetch(args: argparse.Namespace) -> int:
    reg = LocalRegistry(get_settings())
    began = time.monotonic()
    path = reg.fetch(force=args.force)
    print(f"Apicurio Registry {reg.version} in {path} ({time.monotonic() - began:.1f} s)")
    return 0


@_reporting_errors
def _cmd_start(args: argparse.Namespace) -> int:
    info = LocalRegistry(get_settings()).start(port=args.port, timeout=args.timeout)
    if args.json:
        print(json.dumps(asdict(info)))
    else:
        verb = "already running" if info.already_running else f"started ({info.startup_seconds or 0:.1f} s)"
        print(f"registry {verb}: pid {info.pid}, {info.url} (Java: {info.java})")
        print(f"use it: export VEILLE_SCHEMA_REGISTRY_URL={info.url}")
    return 0


@_reporting_errors
def _cmd_stop(args: argparse.Namespace) -> int:
    stopped = LocalRegistry(get_settings()).stop(timeout=args.timeout)
    print("registry stopped" if stopped else "registry was not running")
    return 0


@_reporting_errors
def _cmd_status(args: argparse.Namespace) -> int:
    st = LocalRegistry(get_settings()).status()
    print(json.dumps(asdict(st)) if args.json else st.describe())
    return 0 if st.running else EXIT_NOT_RUNNING


def add_commands(sub: Any) -> None:
    parser = sub.add_parser(
        "registry", help="run the local schema registry (Apicurio, Confluent API) for demos and tests",
        description=f"Local Apicurio Registry serving the Confluent Schema Registry API under "
        f"{CCOMPAT_PATH}, bound to 127.0.0.1, schemas kept in H2 under VEILLE_STATE_DIR/registry. "
        f"Needs Java {MIN_JAVA}+ (found in JAVA_HOME, PATH or the JVM directory) and Maven.")
    cmds = parser.add_subparsers(dest="registry_command", metavar="ACTION", required=True)
    p = cmds.add_parser("fetch", help="download and unpack the registry into the cache")
    p.add_argument("--force", action="store_true", help="fetch again even if cached")
    p.set_defaults(func=_cmd_fetch)
    p = cmds.add_parser("start", help="start the registry in the background and wait until it answers")
    p.add_argument("--port", type=int, default=None,
                   help="HTTP port on 127.0.0.1 (default: the previous one, else a free one)")
    p.add_argument("--timeout", type=float, default=STARTUP_TIMEOUT,
                   help="seconds to wait (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the registry info as JSON")
    p.set_defaults(func=_cmd_start)
    p = cmds.add_parser("stop", help="stop the registry (SIGTERM, then SIGKILL)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL (default %(default)s)")
    p.set_defaults(func=_cmd_stop)
    p = cmds.add_parser("status", help=f"whether the registry runs and answers (exit 0 running, "
                                       f"{EXIT_NOT_RUNNING} not)")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=_cmd_status)
