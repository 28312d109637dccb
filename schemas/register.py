"""``veille schemas register``: every released version of every record into the schema registry.

For each topic of the territory and each record type it carries (``Topics.record_types``),
the subject (``Topics.subject``: ``<topic>-value``, TopicNameStrategy) gets its compatibility
level set, then every released version, oldest first. Idempotent: a version already there
keeps its id.

Compatibility: **BACKWARD_TRANSITIVE**. The hub's own rule (tests/schemas/test_schemas.py) is that
the newest version reads data written with *every* released version: topics keep 30 days,
dead letters are replayed, an agency may re-read its dispatch topic from the beginning.
BACKWARD only compares a new version with the one before it, so v3 could drop a default
that v1 data needs; the transitive level checks it against all of them, as we do.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

from veille.config import Settings, get_settings
from veille.schemas.catalog import Catalog, SchemaVersion, catalog
from veille.schemas.registry import (
    RegistryClient,
    RegistryRefused,
    RegistryUnavailable,
    full_name,
    schema_text,
)
from veille.topics import Topics, territory_topic_specs

COMPATIBILITY = "BACKWARD_TRANSITIVE"


@dataclass(frozen=True)
class SubjectPlan:
    subject: str
    topic: str
    record: str
    versions: tuple[SchemaVersion, ...]


def registration_plan(settings: Settings, cat: Catalog | None = None) -> list[SubjectPlan]:
    """Every (subject, record, released versions) the territory's topics need."""
    cat = cat or catalog()
    topics = Topics(settings.topic_prefix)
    plan = []
    for spec in territory_topic_specs(settings):
        for record in topics.record_types(spec.name):
            versions = tuple(cat.versions(record))
            plan.append(SubjectPlan(topics.subject(spec.name, full_name(versions[-1])), spec.name,
                                    record, versions))
    return plan


def register_catalog(client: RegistryClient, plan: list[SubjectPlan],
                     compatibility: str = COMPATIBILITY) -> dict[str, list[int]]:
    """Register the plan; returns subject -> schema ids of its versions, oldest first."""
    registered: dict[str, list[int]] = {}
    for item in plan:
        # Set before the first version, so that the subject is never unguarded.
        client.set_compatibility(item.subject, compatibility)
        registered[item.subject] = [client.register(item.subject, schema_text(sv)) for sv in item.versions]
    return registered


def registry_url(settings: Settings) -> str:
    """VEILLE_SCHEMA_REGISTRY_URL, else the local registry of this state dir if it runs."""
    if settings.schema_registry_url:
        return settings.schema_registry_url
    from veille.local.registry import LocalRegistry

    url = LocalRegistry(settings).url()
    if url is None:
        raise RegistryUnavailable("no schema registry: set VEILLE_SCHEMA_REGISTRY_URL or run "
                                  "`veille registry start`")
    return url


def client_for(settings: Settings, url: str | None = None) -> RegistryClient:
    return RegistryClient(url or registry_url(settings), username=settings.schema_registry_username,
                          password=settings.schema_registry_password.get_secret_value(),
                          timeout=max(settings.schema_registry_timeout, 10.0))


def _cmd_register(args: argparse.Namespace) -> int:
    settings = get_settings()
    plan = registration_plan(settings)
    if args.dry_run:
        for item in plan:
            print(f"{item.subject:60s} {item.record} v{', v'.join(str(v.version) for v in item.versions)}")
        return 0
    try:
        client = client_for(settings)
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
