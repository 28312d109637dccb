"""A local OpenID Connect provider: Keycloak, for the single sign-on's tests and demos.

``fetch`` lets Maven copy ``keycloak-quarkus-dist-<version>.tar.gz`` (version pinned in
``deploy/keycloak/pom.xml``) into the cache dir and unpacks it to
``cache_dir/keycloak-<version>``, shared by every state dir on the machine, like the
registry's. ``start`` runs its ``bin/kc.sh start-dev`` detached, on a Java 21 or newer found on
this machine (``veille.java``; ``JAVA_HOME`` is set to it for the script), HTTP on 127.0.0.1
and a free port, an in-memory database (``--db=dev-mem``: nothing of a run outlives it, and
two state dirs never share a database inside the shared install), an initial administrator
whose password is made for this start and kept in ``keycloak.json`` (mode 0600) beside the
PID. Realms are imported from files through the admin API once it answers
(:meth:`LocalKeycloak.import_realm`), so that the shared install holds no realm of anyone's.

Not for production: a deployment points ``VEILLE_OIDC_ISSUER`` at its real provider
(ProConnect), never at this.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from veille.config import Settings, get_settings
from veille.java import JavaNotFound, find_java
from veille.local import maven
from veille.local.processes import (
    children,
    free_ports,
    now,
    pid_alive,
    set_parent_death_signal,
    tail,
    terminate,
)
from veille.statedir import StateDir, process_argv

POM_PATH = Path(__file__).resolve().parents[2] / "deploy" / "keycloak" / "pom.xml"
MIN_JAVA = 21
STARTUP_TIMEOUT = 180.0
ADMIN_USER = "veille-admin"


class KeycloakError(RuntimeError):
    """The local Keycloak could not be fetched, started, configured or stopped."""


@dataclass(frozen=True)
class KeycloakInfo:
    pid: int
    url: str  # base, e.g. http://127.0.0.1:PORT; a realm's issuer is <url>/realms/<name>
    port: int
    version: str
    java: str
    started_at: str
    startup_seconds: float | None
    admin_user: str
    admin_password: str

    def issuer(self, realm: str) -> str:
        return f"{self.url}/realms/{realm}"


def keycloak_java() -> tuple[str, int]:
    try:
        return find_java(MIN_JAVA)
    except JavaNotFound as exc:
        raise KeycloakError(f"Keycloak needs {exc}") from exc


def keycloak_answering(url: str, timeout: float = 2.0) -> bool:
    try:
        resp = httpx.get(f"{url}/realms/master/.well-known/openid-configuration", timeout=timeout)
    except httpx.HTTPError:
        return False
    return resp.status_code == 200


class LocalKeycloak(StateDir):
    """One Keycloak living in ``settings.state_dir/keycloak`` (state, logs) and running from
    the shared install in the cache dir."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.pom = POM_PATH

    @property
    def version(self) -> str:
        try:
            return maven.pom_property(self.pom, "keycloak.version")
        except maven.FetchError as exc:
            raise KeycloakError(str(exc)) from None

    @property
    def app_dir(self) -> Path:
        return self.settings.cache_dir / f"keycloak-{self.version}"

    @property
    def dir(self) -> Path:
        return self.settings.state_dir / "keycloak"

    @property
    def state_file(self) -> Path:
        return self.dir / "keycloak.json"

    @property
    def log_file(self) -> Path:
        return self.dir / "logs" / "keycloak.log"

    # ---- fetch

    def is_fetched(self) -> bool:
        return maven.is_fetched(self.app_dir, self.pom) and (self.app_dir / "bin" / "kc.sh").is_file()

    def fetch(self, force: bool = False) -> Path:
        """Download (Maven) and unpack Keycloak into the cache once; return its dir."""
        if not force and self.is_fetched():
            return self.app_dir
        self.app_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="keycloak.", dir=self.app_dir.parent))
        try:
            maven.copy_dependencies(self.pom, tmp / "dl", f"Keycloak {self.version}")
            archives = sorted((tmp / "dl").glob("keycloak-quarkus-dist-*.tar.gz"))
            if not archives:
                raise KeycloakError(f"Maven ran but no keycloak-quarkus-dist archive in {tmp / 'dl'}")
            with tarfile.open(archives[0]) as tar:
                tar.extractall(tmp / "x", filter="data")
            unpacked = [p for p in (tmp / "x").iterdir() if (p / "bin" / "kc.sh").is_file()]
            if not unpacked:
                raise KeycloakError(f"{archives[0].name} has no bin/kc.sh")
            maven.mark_fetched(unpacked[0], self.pom, version=self.version)
            if self.app_dir.exists():
                shutil.rmtree(self.app_dir)
            unpacked[0].rename(self.app_dir)
        except maven.FetchError as exc:
            raise KeycloakError(str(exc)) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self.app_dir

    # ---- process

    def _is_our_process(self, pid: int | None, port: int | None) -> bool:
        """``pid`` is alive and is the kc.sh this state dir started (its port is in its argv)."""
        if not pid or not port or not pid_alive(pid):
            return False
        argv = process_argv(pid)
        return any(a.endswith(b"/kc.sh") for a in argv) and f"--http-port={port}".encode() in argv

    def command(self, port: int) -> list[str]:
        return [str(self.app_dir / "bin" / "kc.sh"), "start-dev", "--db=dev-mem",
                "--http-host=127.0.0.1", f"--http-port={port}",
                "--health-enabled=false", "--log-level=WARN"]

    def start(self, *, timeout: float = STARTUP_TIMEOUT, die_with_parent: bool = False) -> KeycloakInfo:
        """Start Keycloak (or return the running one) and wait until its master realm answers."""
        java, _major = keycloak_java()
        with self._lock():
            state = self._read_state()
            if self._is_our_process(state.get("pid"), state.get("port")):
                self._wait(state["pid"], state["url"], timeout)
                return self._info(state)
            app = self.fetch()
            port = free_ports(1)[0]
            url = f"http://127.0.0.1:{port}"
            password = secrets.token_urlsafe(24)
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            env = {**os.environ,
                   "JAVA_HOME": str(Path(os.path.realpath(java)).parents[1]),
                   # A test or demo provider: start fast rather than peak throughput.
                   "JAVA_OPTS_APPEND": "-XX:TieredStopAtLevel=1",
                   "KC_BOOTSTRAP_ADMIN_USERNAME": ADMIN_USER,
                   "KC_BOOTSTRAP_ADMIN_PASSWORD": password}
            spawned = time.monotonic()
            with open(self.log_file, "ab") as out:
                out.write(f"\n--- {now()} starting on {url}\n".encode())
                out.flush()
                proc = subprocess.Popen(
                    self.command(port), cwd=app, env=env, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=set_parent_death_signal if die_with_parent else None)
            children[proc.pid] = proc
            new = {"pid": proc.pid, "url": url, "port": port, "version": self.version, "java": java,
                   "started_at": now(), "startup_seconds": None, "admin_user": ADMIN_USER,
                   "admin_password": password}
            self._write_private(new)
            try:
                self._wait(proc.pid, url, timeout)
            except BaseException:
                terminate(proc.pid, 10.0)
                self._write_private({k: v for k, v in new.items() if k != "pid"})
                raise
            new["startup_seconds"] = round(time.monotonic() - spawned, 3)
            self._write_private(new)
            return self._info(new)

    def _write_private(self, state: dict[str, Any]) -> None:
        self._write_state(state)
        os.chmod(self.state_file, 0o600)  # it holds this start's admin password

    def _info(self, state: dict[str, Any]) -> KeycloakInfo:
        names = KeycloakInfo.__dataclass_fields__
        return KeycloakInfo(**{k: v for k, v in state.items() if k in names})

    def _wait(self, pid: int, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not keycloak_answering(url, 1.0):
            if not pid_alive(pid):
                raise KeycloakError(f"Keycloak (pid {pid}) exited during startup; {self.log_file}:\n"
                                    f"{tail(self.log_file)}")
            if time.monotonic() > deadline:
                raise KeycloakError(f"Keycloak (pid {pid}) did not answer on {url} within "
                                    f"{timeout:.0f} s; see {self.log_file}")
            time.sleep(0.2)

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM (SIGKILL after ``timeout``) the recorded process. False if not running."""
        with self._lock():
            state = self._read_state()
            pid = state.get("pid")
            running = self._is_our_process(pid, state.get("port"))
            if running:
                terminate(int(pid), timeout)  # type: ignore[arg-type]
            if "pid" in state:
                state.pop("pid")
                state.pop("admin_password", None)
                state["stopped_at"] = now()
                self._write_private(state)
            return running

    # ---- realms

    def admin_token(self, info: KeycloakInfo) -> str:
        resp = httpx.post(f"{info.url}/realms/master/protocol/openid-connect/token", timeout=30,
                          data={"grant_type": "password", "client_id": "admin-cli",
                                "username": info.admin_user, "password": info.admin_password})
        if resp.status_code != 200:
            raise KeycloakError(f"admin login refused ({resp.status_code}): {resp.text[:300]}")
        return str(resp.json()["access_token"])

    def import_realm(self, info: KeycloakInfo, realm_file: Path,
                     overrides: dict[str, Any] | None = None) -> str:
        """Create the realm described by ``realm_file`` (a realm export, JSON), with top-level
        ``overrides`` (e.g. another ``realm`` name); replace it if it exists. Its name."""
        realm = {**json.loads(realm_file.read_text(encoding="utf-8")), **(overrides or {})}
        name = str(realm["realm"])
        headers = {"Authorization": f"Bearer {self.admin_token(info)}"}
        with httpx.Client(base_url=f"{info.url}/admin", headers=headers, timeout=60) as admin:
            admin.delete(f"/realms/{name}")
            resp = admin.post("/realms", json=realm)
            if resp.status_code != 201:
                raise KeycloakError(f"{realm_file}: realm {name} refused ({resp.status_code}): "
                                    f"{resp.text[:500]}")
        return name
