"""The ``veille`` command: one entry point, one sub-command group per component.

Each component module exposes ``add_commands(subparsers)``; this file lists them, so that
``veille --help`` explains the whole hub in one screen, and is the one production module that
names the local tooling (``veille.local``): it hands ``veille schemas register`` the local
registry as its fallback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from veille.local.registry import LocalRegistry
from veille.telemetry import enable_crash_tracebacks

# Modules contributing sub-commands, in the order they appear in --help.
COMMAND_MODULES = [
    "veille.local.broker_cli",
    "veille.local.registry",
    "veille.local.keycloak_cli",
    "veille.topics_cli",
    "veille.schemas_cli",
    "veille.territory.cli",
    "veille.producers.cli",
    "veille.streams.cli",
    "veille.local.demo",
    "veille.sinks.cli",
    "veille.deliver.cli",
    "veille.photos.cli",
    "veille.notify.cli",
    "veille.security_cli",
    "veille.pcs.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="veille",
        description="Veille: inter-municipal incident and alert hub on Kafka + ClickHouse.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    # What the local tooling offers a production command: without a configured registry URL,
    # `veille schemas register` uses the local registry of this state dir if it runs. Handed in
    # from here, the one module that names both, so that no other production module imports it.
    parser.set_defaults(local_registry_url=lambda settings: LocalRegistry(settings).url())
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # A crash in a C extension (librdkafka, chDB, ...) must leave evidence: every thread's
    # Python traceback goes to stderr, which the long-running commands (router, sink, intake)
    # log to. Costs nothing until a fatal signal arrives.
    enable_crash_tracebacks()
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
