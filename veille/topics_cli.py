"""``veille topics create|list``: the command line of :mod:`veille.topics`, for the territory's topics.

Apart from the layout because it reads the territory file (``veille.territory.topics``), a
layer above the layout that the schemas and every component import.
"""

from __future__ import annotations

import argparse
import json

from confluent_kafka.admin import AdminClient

from veille.config import get_settings
from veille.territory.topics import territory_topic_specs
from veille.topics import DAY_MS, ensure_topics


def _cmd_create(args: argparse.Namespace) -> int:
    settings = get_settings()
    admin = AdminClient(settings.kafka_client_config())
    outcome = ensure_topics(admin, territory_topic_specs(settings))
    if args.json:
        print(json.dumps(outcome, indent=2))
    else:
        for name, what in sorted(outcome.items()):
            print(f"{name:50s} {what}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    for s in territory_topic_specs(get_settings()):
        retention_days = int(s.config["retention.ms"]) // DAY_MS
        print(f"{s.name:50s} partitions={s.partitions} replication={s.replication} "
              f"retention={retention_days}d")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("topics", help="declare and create the hub's Kafka topics",
                       description="Topics of the hub, derived from the territory file.")
    tsub = p.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    c = tsub.add_parser("create", help="create missing topics and align their config (idempotent)")
    c.add_argument("--json", action="store_true", help="print the outcome as JSON")
    c.set_defaults(func=_cmd_create)
    ls = tsub.add_parser("list", help="print the declared topic layout without touching Kafka")
    ls.set_defaults(func=_cmd_list)
