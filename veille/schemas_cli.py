"""``veille schemas register``: the command line of :mod:`veille.schemas.register`.

Apart from it because it needs two things the schemas layer does not import: the territory
(which topics need subjects, ``veille.territory.topics``) and, when no registry URL is
configured, the local registry of this state dir. That fallback is local tooling, which only
the ``veille`` command (``veille/cli.py``) imports: it hands it in as the
``local_registry_url`` default of every command.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from veille.config import Settings, get_settings
from veille.schemas.register import COMPATIBILITY, register_catalog, registration_plan
from veille.schemas.registry import RegistryClient, RegistryRefused, RegistryUnavailable
from veille.territory.topics import territory_topic_specs

LocalRegistryUrl = Callable[[Settings], str | None]


def registry_url(settings: Settings, local_registry_url: LocalRegistryUrl | None = None) -> str:
    """VEILLE_SCHEMA_REGISTRY_URL, else the local registry of this state dir if it runs."""
    if settings.schema_registry_url:
        return settings.schema_registry_url
    url = local_registry_url(settings) if local_registry_url is not None else None
    if url is None:
        raise RegistryUnavailable("no schema registry: set VEILLE_SCHEMA_REGISTRY_URL or run "
                                  "`veille registry start`")
    return url


def client_for(settings: Settings, url: str) -> RegistryClient:
    return RegistryClient(url, username=settings.schema_registry_username,
                          password=settings.schema_registry_password.get_secret_value(),
                          timeout=max(settings.schema_registry_timeout, 10.0))


def _cmd_register(args: argparse.Namespace) -> int:
    settings = get_settings()
    plan = registration_plan(settings, territory_topic_specs(settings))
    if args.dry_run:
        for item in plan:
            print(f"{item.subject:60s} {item.record} v{', v'.join(str(v.version) for v in item.versions)}")
        return 0
    try:
        client = client_for(settings, registry_url(settings, getattr(args, "local_registry_url", None)))
        registered = register_catalog(client, plan, args.compatibility)
    except (RegistryUnavailable, RegistryRefused, ValueError) as exc:
        print(f"veille schemas: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(registered, indent=1))
    else:
        for subject, ids in registered.items():
            print(f"{subject:60s} ids {', '.join(map(str, ids))}")
        print(f"{len(registered)} subjects registered in {client.url} ({args.compatibility})")
    return 0


def add_commands(sub: Any) -> None:
    parser = sub.add_parser("schemas", help="the Avro contract in a schema registry (Confluent API)",
                            description="Register every released schema version in the schema "
                            "registry at VEILLE_SCHEMA_REGISTRY_URL (else the local one).")
    cmds = parser.add_subparsers(dest="schemas_command", metavar="ACTION", required=True)
    p = cmds.add_parser("register", help="register every released version under each topic's subject")
    p.add_argument("--compatibility", default=COMPATIBILITY,
                   choices=["BACKWARD", "BACKWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"],
                   help="compatibility level set on every subject (default %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="print the subjects and versions only")
    p.add_argument("--json", action="store_true", help="print subject -> ids as JSON")
    p.set_defaults(func=_cmd_register)
