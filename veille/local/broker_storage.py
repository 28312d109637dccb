"""The local broker's storage: formatted once per state dir (KRaft cluster id and the
superuser's SCRAM credentials), and the superuser's credentials file next to ``broker.json``."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
from pathlib import Path

from veille.config import ADMIN_CREDENTIALS_FILE
from veille.local.broker_config import ADMIN_USER, SASL_MECHANISM, BrokerError
from veille.statedir import write_private


def random_cluster_id() -> str:
    """Same format as ``kafka-storage random-uuid``: 16 random bytes, URL-safe base64."""
    while True:
        cid = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def meta_cluster_id(meta: Path) -> str:
    for line in meta.read_text().splitlines():
        if line.startswith("cluster.id="):
            return line.split("=", 1)[1].strip()
    return ""


def read_admin_credentials(broker_dir: Path) -> tuple[str, str] | None:
    """(user, password) from ``broker_dir/admin-credentials.json``, None if absent or unreadable."""
    try:
        data = json.loads((broker_dir / ADMIN_CREDENTIALS_FILE).read_text())
        return str(data["username"]), str(data["password"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ensure_admin_credentials(broker_dir: Path) -> tuple[str, str]:
    """The superuser's (user, password), made up and written (mode 0600) on first use."""
    found = read_admin_credentials(broker_dir)
    if found:
        return found
    password = secrets.token_urlsafe(24)
    write_private(
        broker_dir / ADMIN_CREDENTIALS_FILE,
        json.dumps({"username": ADMIN_USER, "password": password, "mechanism": SASL_MECHANISM}),
    )
    return ADMIN_USER, password


def format_storage(java: str, classpath: str, log4j_file: Path, properties_file: Path, data_dir: Path,
                   cluster_id: str, admin: tuple[str, str]) -> None:
    """Format the KRaft storage of ``data_dir`` (first start of a state dir)."""
    user, password = admin
    cmd = [java, f"-Dlog4j2.configurationFile={log4j_file}", "-cp", classpath, "kafka.tools.StorageTool",
           "format", "-t", cluster_id, "-c", str(properties_file)]
    # Formatting always creates the superuser, so that a broker first run with --no-auth can
    # later be restarted with auth. The password shows in this short-lived process's argv:
    # StorageTool has no other way to take it.
    cmd += ["--add-scram", f"{SASL_MECHANISM}=[name={user},password={password}]"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise BrokerError(
            f"formatting {data_dir} failed:\n{out.stdout.replace(password, '***')}"
            f"{out.stderr.replace(password, '***')}"
        )
