"""``veille territory check | show``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from veille.pcs.plan import PCS_FILE, check_plan, read_plan
from veille.schemas.models import ServiceKind
from veille.territory.checks import validate_territory
from veille.territory.files import read_territory
from veille.territory.identity_map import IDENTITY_FILE, check_identity_map, read_identity_map
from veille.territory.model import TerritoryError


def _default_dir(args: argparse.Namespace) -> Path:
    if args.directory:
        return Path(args.directory)
    from veille.config import get_settings

    return get_settings().territory_dir


def _cmd_check(args: argparse.Namespace) -> int:
    directory = _default_dir(args)
    try:
        territory = read_territory(directory)
    except TerritoryError as exc:
        print(exc, file=sys.stderr)
        return 2
    issues = validate_territory(territory)
    identity_file = directory / IDENTITY_FILE
    if identity_file.is_file():  # optional: only deployments with single sign-on have one
        try:
            issues += check_identity_map(read_identity_map(identity_file), territory)
        except TerritoryError as exc:
            print(exc, file=sys.stderr)
            return 2
    pcs_file = directory / PCS_FILE
    if pcs_file.is_file():  # optional: the towns' alert chains beyond the town hall
        try:
            issues += check_plan(read_plan(pcs_file), territory)
        except TerritoryError as exc:
            print(exc, file=sys.stderr)
            return 2
    shown = issues if args.verbose else [i for i in issues if i.level != "info"]
    for issue in shown:
        print(issue)
    errors = sum(1 for i in issues if i.level == "error")
    warnings = sum(1 for i in issues if i.level == "warning")
    print(f"{directory}: {len(territory.municipalities)} municipalities, {len(territory.agencies)} "
          f"agencies, {len(territory.service_areas)} service areas: {errors} error(s), "
          f"{warnings} warning(s)")
    return 1 if errors else 0


def _cmd_show(args: argparse.Namespace) -> int:
    try:
        t = read_territory(_default_dir(args))
    except TerritoryError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{t.name} ({t.path})")
    print(f"\nMunicipalities ({len(t.municipalities)}):")
    for m in t.municipalities.values():
        print(f"  {m.insee}  {m.name:32s} pop {m.population:>7}")
    print(f"\nAgencies ({len(t.agencies)}):")
    for ag in sorted(t.agencies.values(), key=lambda ag: ag.id):
        home = ag.home_municipality or "-"
        print(f"  {ag.id:24s} {ag.level:13s} home {home:5s}  {', '.join(sorted(ag.services))}")
    print("\nService areas:")
    for service in ServiceKind:
        areas = [a for a in t.service_areas if a.service == service]
        for a in areas:
            prio = f" priority {a.priority}" if a.priority else ""
            print(f"  {service:20s} {a.agency_id:24s} {a.describe()}{prio}")
    r = t.rules
    print(f"\nRules: {len(r.incident_rules)} incident, {len(r.escalations)} escalation, "
          f"{len(r.alert_rules)} alert" + (f", PCS chain -> {r.pcs.service}" if r.pcs else ""))
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("territory", help="check and show the territory and its jurisdiction rules",
                       description="Municipalities, agencies, service areas and routing rules "
                       "(default directory: VEILLE_TERRITORY_DIR).")
    tsub = p.add_subparsers(dest="territory_command", metavar="ACTION", required=True)
    c = tsub.add_parser("check", help="report gaps, overlaps and broken references (exit 1 on errors)")
    c.add_argument("directory", nargs="?", help="territory directory")
    c.add_argument("-v", "--verbose", action="store_true", help="also print informational notes")
    c.set_defaults(func=_cmd_check)
    s = tsub.add_parser("show", help="summary of municipalities, agencies and service areas")
    s.add_argument("directory", nargs="?", help="territory directory")
    s.set_defaults(func=_cmd_show)
