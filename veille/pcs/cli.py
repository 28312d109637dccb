"""``veille pcs check | register key|add|list|delete``.

The register's commands print names only to the terminal of whoever holds the key, and only
what the reader named by ``--representative`` (or the town's safeguard service) may see.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from veille.pcs.plan import PCS_FILE, check_plan, read_plan
from veille.pcs.register import Reader, RegisterError, default_register, new_key
from veille.territory.files import read_territory
from veille.territory.model import TerritoryError


def _territory_dir(args: argparse.Namespace) -> Path:
    if getattr(args, "directory", None):
        return Path(args.directory)
    from veille.config import get_settings

    return get_settings().territory_dir


def _cmd_check(args: argparse.Namespace) -> int:
    directory = _territory_dir(args)
    try:
        territory = read_territory(directory)
        plan = read_plan(directory / PCS_FILE)
    except TerritoryError as exc:
        print(exc, file=sys.stderr)
        return 2
    issues = check_plan(plan, territory)
    for issue in issues:
        if args.verbose or issue.level != "info":
            print(issue)
    reps = sum(len(p.representatives) for p in plan.municipalities.values())
    errors = sum(1 for i in issues if i.level == "error")
    print(f"{directory / PCS_FILE}: {len(plan.municipalities)} municipalities, {reps} "
          f"representatives: {errors} error(s)")
    return 1 if errors else 0


def _check_representative(insee: str, rep: str | None, args: argparse.Namespace) -> str | None:
    """An error message when ``rep`` is not a representative of ``insee`` in the plan."""
    if rep is None:
        return None
    try:
        plan = read_plan(_territory_dir(args) / PCS_FILE)
    except TerritoryError as exc:
        return str(exc)
    found = plan.find(rep)
    if found is None or found[0] != insee:
        return f"{rep!r} is not a representative of {insee} in {PCS_FILE}"
    return None


def _cmd_key(args: argparse.Namespace) -> int:
    print(new_key())
    return 0


def _cmd_add(args: argparse.Namespace) -> int:
    error = _check_representative(args.insee, args.representative, args)
    if error:
        print(error, file=sys.stderr)
        return 2
    try:
        person = default_register().add(args.insee, name=args.name, address=args.address,
                                        needs=args.needs, representative=args.representative)
    except RegisterError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(person.id)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    try:
        entries = default_register().entries_for(Reader(args.insee, args.representative))
    except RegisterError as exc:
        print(exc, file=sys.stderr)
        return 2
    for p in entries:
        print(f"{p.id}  {p.representative:24s} {p.name} — {p.address} — {p.needs or '-'}")
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    try:
        deleted = default_register().delete(args.insee, args.id)
    except RegisterError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not deleted:
        print(f"no entry {args.id} in {args.insee}'s register", file=sys.stderr)
        return 1
    print(f"deleted {args.id}")
    return 0


PCS_INFO = "pcs.json"


def _cmd_action(args: argparse.Namespace) -> int:
    """Record a prevention action (counts only) on the cascade topic; the sink stores it."""
    import uuid

    from pydantic import ValidationError

    from veille.config import get_settings
    from veille.pcs.prevention import ParticipantKind, PreventionAction
    from veille.pcs.record import prevention_event, prevention_publisher

    try:
        action = PreventionAction(
            id=args.id or str(uuid.uuid4()), municipality=args.insee, kind=args.kind, date=args.date,
            area=args.area, participants={k: getattr(args, k.value) for k in ParticipantKind
                                          if getattr(args, k.value)})
    except ValidationError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not prevention_publisher(get_settings())(prevention_event(action)):
        print("not acknowledged by the broker", file=sys.stderr)
        return 1
    print(action.id)
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    """The cascade worker (streams/pcs.py): its own faust app, group and Table."""
    import faust

    from veille.config import get_settings
    from veille.statedir import write_process_info
    from veille.streams.pcs import create_pcs_app
    from veille.territory.topics import ensure_territory_topics

    settings = get_settings()
    ensure_territory_topics(settings)
    from veille.telemetry import serve_metrics

    app = create_pcs_app(settings, tick_seconds=args.tick_seconds)
    port_arg = args.metrics_port if args.metrics_port is not None else settings.metrics_port
    _server, port = serve_metrics(port_arg)
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    write_process_info(settings.state_dir / PCS_INFO, metrics=metrics_url)
    print(f"pcs: consuming {settings.topic_prefix}.routed and .pcs.cascade; metrics on {metrics_url}",
          flush=True)
    worker = faust.Worker(app, loglevel=args.log_level, quiet=True, redirect_stdouts=False)
    worker.spinner = None
    worker.execute_from_commandline()
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("pcs", help="the safeguard plans' alert chains and the vulnerable-persons register",
                       description="PCS chains (pcs.yaml beside the territory) and the encrypted "
                       "vulnerable-persons register (key: VEILLE_PCS_REGISTER_KEY).")
    psub = p.add_subparsers(dest="pcs_command", metavar="ACTION", required=True)
    c = psub.add_parser("check", help="validate pcs.yaml against the territory (exit 1 on errors)")
    c.add_argument("directory", nargs="?", help="territory directory")
    c.add_argument("-v", "--verbose", action="store_true", help="also print informational notes")
    c.set_defaults(func=_cmd_check)
    w = psub.add_parser("worker", help="run the alert cascade (a faust worker) until SIGTERM")
    w.add_argument("--metrics-port", type=int, default=None,
                   help="port of /metrics (default VEILLE_METRICS_PORT, 0 = any free port)")
    w.add_argument("--tick-seconds", type=float, default=1.0, help="how often deadlines are checked")
    w.add_argument("--log-level", default="warn", choices=["crit", "error", "warn", "info", "debug"])
    w.set_defaults(func=_cmd_worker)
    act = psub.add_parser("action", help="record a prevention action (walk, meeting, mediation)")
    asub = act.add_subparsers(dest="action_command", metavar="ACTION", required=True)
    aa = asub.add_parser("add", help="record one action; participants as counts, never names")
    aa.add_argument("insee")
    aa.add_argument("--kind", required=True,
                    choices=["exploratory_walk", "neighbourhood_meeting", "mediation_session"])
    aa.add_argument("--date", required=True, help="YYYY-MM-DD")
    aa.add_argument("--area", required=True, help="place or area, e.g. 'quartier de la Gare'")
    aa.add_argument("--id", help="the action's id (default: a new one); the same id replaces it")
    for kind in ("residents", "representatives", "police", "landlords", "associations"):
        aa.add_argument(f"--{kind}", type=int, default=0, help=f"how many {kind} took part")
    aa.set_defaults(func=_cmd_action)
    r = psub.add_parser("register", help="the vulnerable-persons register (encrypted at rest)")
    rsub = r.add_subparsers(dest="register_command", metavar="ACTION", required=True)
    k = rsub.add_parser("key", help="print a new key for VEILLE_PCS_REGISTER_KEY")
    k.set_defaults(func=_cmd_key)
    a = rsub.add_parser("add", help="register a person (with their consent); prints the entry id")
    a.add_argument("insee")
    a.add_argument("--name", required=True)
    a.add_argument("--address", required=True)
    a.add_argument("--needs", default="")
    a.add_argument("--representative", required=True, help="the representative who checks on them")
    a.add_argument("--territory", dest="directory", help="territory directory")
    a.set_defaults(func=_cmd_add)
    ls = rsub.add_parser("list", help="entries the reader may see (the safeguard service: all)")
    ls.add_argument("insee")
    ls.add_argument("--representative", help="list as this representative (their persons only)")
    ls.set_defaults(func=_cmd_list)
    d = rsub.add_parser("delete", help="delete an entry (on request, or when consent ends)")
    d.add_argument("insee")
    d.add_argument("id")
    d.set_defaults(func=_cmd_delete)
