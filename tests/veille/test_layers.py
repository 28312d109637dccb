"""The layering: the production path never imports the local tooling (veille.local)."""

from __future__ import annotations

import re
import subprocess
import sys

from paths import ROOT

PRODUCTION_DIRS = ("veille", "schemas", "producers", "streams", "sinks")
# The `veille` command lists every command group, the local ones included, and hands `veille
# schemas register` the local registry's URL as its fallback when none is configured.
MAY_NAME_LOCAL = {"veille/cli.py"}
ENTRY_POINTS = ["veille.security", "veille.security_cli", "veille.quotas", "veille.kafka", "veille.topics",
                "veille.topics_cli", "veille.territory", "veille.territory.topics", "veille.streams.app",
                "veille.streams.cli", "veille.sinks.cli", "veille.sinks.pipeline", "veille.producers.cli",
                "veille.producers.http_intake", "veille.schemas.register", "veille.schemas_cli"]


def test_no_production_module_imports_the_local_tooling() -> None:
    offenders = []
    for top in PRODUCTION_DIRS:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("veille/local/") or rel in MAY_NAME_LOCAL:
                continue
            if re.search(r"^\s*(from|import)\s+veille\.local\b", path.read_text(), re.MULTILINE):
                offenders.append(rel)
    assert offenders == []


def test_loading_the_components_loads_no_local_tooling() -> None:
    code = ("import importlib, sys\n"
            f"for name in {ENTRY_POINTS!r}: importlib.import_module(name)\n"
            "print(sorted(n for n in sys.modules if n.startswith('veille.local')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
