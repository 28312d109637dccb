"""``veille security provision|plan``: the command line of :mod:`veille.security`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from confluent_kafka import KafkaException

from veille.config import get_settings
from veille.security import CREDENTIALS_FILE, SecurityError, acl_plan, provision, quota_plan


def _cmd_provision(args: argparse.Namespace) -> int:
    settings = get_settings()
    try:
        report = provision(settings, rotate=args.rotate, quotas=not args.no_quotas)
    except (SecurityError, KafkaException) as exc:
        print(f"veille security: error: {exc}", file=sys.stderr)
        return 1
    print(report.describe())
    print(f"passwords: {settings.state_dir / CREDENTIALS_FILE} (mode 0600)")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from veille.territory import load_territory

    settings = get_settings()
    territory = load_territory(settings.territory_dir)
    plan = acl_plan(settings.topic_prefix, territory.municipalities, territory.agencies)
    if args.json:
        print(json.dumps([g.__dict__ for g in plan], indent=1))
        return 0
    for g in plan:
        kind = "prefix" if g.prefixed else "literal"
        print(f"{g.user:28s} {g.operation:16s} {g.resource:6s} {kind:7s} {g.name}")
    for user, values in quota_plan(settings, territory.municipalities).items():
        print(f"{user:28s} quota {', '.join(f'{k}={v:g}' for k, v in values.items())}")
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("security", help="Kafka users, ACLs and quotas of the hub (from the territory)",
                       description="SCRAM users, ACLs and per-municipality quotas derived from the "
                                   "territory file. Run as a Kafka admin (locally: the broker's admin, "
                                   "automatically).")
    cmds = p.add_subparsers(dest="security_command", metavar="ACTION", required=True)
    prov = cmds.add_parser(
        "provision", help="create users, ACLs and quotas (idempotent)",
        description="Create the SCRAM user of every municipality (muni-<INSEE>), agency "
                    "(agency-<id>) and component (router, sink, intake, simulator), their ACLs, "
                    "and the municipalities' quotas. Passwords go to VEILLE_STATE_DIR/"
                    f"{CREDENTIALS_FILE} (mode 0600). Safe to re-run; --rotate gives a user a new "
                    "password (restart its clients with it).")
    prov.add_argument("--rotate", action="append", default=[], metavar="USER",
                      help="new password for USER (repeatable)")
    prov.add_argument("--no-quotas", action="store_true",
                      help="skip the quotas (they need Java and Kafka's jars, see VEILLE_KAFKA_TOOLS_DIR)")
    prov.set_defaults(func=_cmd_provision)
    plan = cmds.add_parser("plan", help="print the ACLs and quotas without touching Kafka")
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(func=_cmd_plan)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m veille.security_cli")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["security", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
