"""Fetching the local servers' jars with Maven, once per pom content, into the cache dir.

The poms under ``deploy/`` pin the versions; ``copy_dependencies`` runs Maven on one and a
marker file in the fetched directory records the pom's digest, so that editing a pom fetches
again and nothing else does.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from veille.local.processes import now

FETCH_MARKER = ".fetched"
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


class FetchError(RuntimeError):
    """Maven is missing, or could not fetch what a pom names."""


def pom_property(pom: Path, name: str) -> str:
    node = ET.parse(pom).getroot().find(f"m:properties/m:{name}", _POM_NS)
    if node is None or not (node.text or "").strip():
        raise FetchError(f"{pom}: no <{name}> property")
    return (node.text or "").strip()


def pom_digest(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def is_fetched(directory: Path, pom: Path) -> bool:
    """``directory`` holds what ``pom`` names, as the pom is now."""
    try:
        marker = json.loads((directory / FETCH_MARKER).read_text())
    except (OSError, ValueError):
        return False
    return bool(marker.get("pom_sha256") == pom_digest(pom))


def mark_fetched(directory: Path, pom: Path, **details: Any) -> None:
    marker = {"pom_sha256": pom_digest(pom), **details, "fetched_at": now()}
    (directory / FETCH_MARKER).write_text(json.dumps(marker, indent=1))


def copy_dependencies(pom: Path, output_dir: Path, what: str, *options: str) -> None:
    """``mvn dependency:copy-dependencies`` of ``pom`` into ``output_dir``."""
    mvn = shutil.which("mvn")
    if not mvn:
        raise FetchError(f"`mvn` not found: fetching {what} needs Apache Maven (e.g. apt-get install maven)")
    cmd = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
           f"-DoutputDirectory={output_dir}", *options]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise FetchError(f"Maven could not fetch {what} (exit {out.returncode}):\n"
                         f"{(out.stdout + out.stderr)[-4000:]}")
