"""Every released version of every record into the schema registry (``veille schemas register``).

For each topic of the territory and each record type it carries (``Topics.record_types``),
the subject (``Topics.subject``: ``<topic>-value``, TopicNameStrategy) gets its compatibility
level set, then every released version, oldest first. Idempotent: a version already there
keeps its id.

Compatibility: **BACKWARD_TRANSITIVE**. The hub's own rule (tests/schemas/test_schemas.py) is that
the newest version reads data written with *every* released version: topics keep 30 days,
dead letters are replayed, an agency may re-read its dispatch topic from the beginning.
BACKWARD only compares a new version with the one before it, so v3 could drop a default
that v1 data needs; the transitive level checks it against all of them, as we do.

The command line is in ``veille/schemas_cli.py``: it reads the territory (which topics) and
may fall back to the local registry, two things the schemas layer does not import.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from veille.config import Settings
from veille.schemas.catalog import Catalog, SchemaVersion, catalog
from veille.schemas.registry import RegistryClient, full_name, schema_text
from veille.topics import Topics, TopicSpec

COMPATIBILITY = "BACKWARD_TRANSITIVE"


@dataclass(frozen=True)
class SubjectPlan:
    subject: str
    topic: str
    record: str
    versions: tuple[SchemaVersion, ...]


def registration_plan(settings: Settings, specs: Iterable[TopicSpec],
                      cat: Catalog | None = None) -> list[SubjectPlan]:
    """Every (subject, record, released versions) the topics ``specs`` need (the territory's:
    ``veille.territory.topics.territory_topic_specs``)."""
    cat = cat or catalog()
    topics = Topics(settings.topic_prefix)
    plan = []
    for spec in specs:
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
