"""``veille broker fetch | start | stop | restart | status``: the local broker, or the local
three-node cluster when one exists (:mod:`veille.local.cluster`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import Any

from veille.config import get_settings
from veille.local import cluster
from veille.local.broker import EXIT_NOT_RUNNING, MIN_JAVA, STARTUP_TIMEOUT, BrokerInfo, LocalBroker
from veille.local.broker_config import ADMIN_USER, SASL_MECHANISM, BrokerError
from veille.local.processes import reporting

_reporting_errors = reporting("broker", BrokerError)


@_reporting_errors
def _cmd_fetch(args: argparse.Namespace) -> int:
    broker = LocalBroker(get_settings())
    began = time.monotonic()
    cached = not args.force and broker.is_fetched()
    libs = broker.fetch(force=args.force)
    verb = "already cached in" if cached else "fetched into"
    print(f"Kafka {broker.kafka_version} jars {verb} {libs} ({time.monotonic() - began:.1f} s)")
    return 0


@_reporting_errors
def _cmd_start(args: argparse.Namespace) -> int:
    if args.nodes > 1 or cluster.LocalCluster.exists(get_settings()):
        return cluster.cmd_start(get_settings(), max(args.nodes, 3), args.timeout, args.auth)
    broker = LocalBroker(get_settings())
    info = broker.start(port=args.port, timeout=args.timeout, auth=args.auth)
    if args.json:
        print(json.dumps(asdict(info)))
    elif info.already_running:
        print(f"broker already running: pid {info.pid}, {info.bootstrap}{_auth_note(info)}")
    else:
        print(f"broker started: pid {info.pid}, {info.bootstrap} ({info.startup_seconds or 0:.1f} s)"
              f"{_auth_note(info)}")
    if info.auth:
        print(f"SASL/SCRAM ({SASL_MECHANISM}) + ACLs on; superuser '{ADMIN_USER}', password in "
              f"{broker.admin_credentials_file} (local veille commands use it by themselves)")
    return 0


def _auth_note(info: BrokerInfo) -> str:
    return ", SASL_PLAINTEXT" if info.auth else ", PLAINTEXT (no authentication)"


@_reporting_errors
def _cmd_stop(args: argparse.Namespace) -> int:
    if cluster.LocalCluster.exists(get_settings()):
        return cluster.cmd_stop(get_settings(), args.timeout)
    stopped = LocalBroker(get_settings()).stop(timeout=args.timeout)
    print("broker stopped" if stopped else "broker was not running")
    return 0


@_reporting_errors
def _cmd_restart(args: argparse.Namespace) -> int:
    if cluster.LocalCluster.exists(get_settings()):
        return cluster.cmd_restart(get_settings(), args.timeout)
    info = LocalBroker(get_settings()).restart(timeout=args.timeout)
    print(f"broker restarted: pid {info.pid}, {info.bootstrap} ({info.startup_seconds or 0:.1f} s)")
    return 0


@_reporting_errors
def _cmd_status(args: argparse.Namespace) -> int:
    if cluster.LocalCluster.exists(get_settings()):
        return cluster.cmd_status(get_settings(), args.json)
    st = LocalBroker(get_settings()).status()
    print(json.dumps(asdict(st)) if args.json else st.describe())
    return 0 if st.running else EXIT_NOT_RUNNING


def add_commands(sub: Any) -> None:
    parser = sub.add_parser(
        "broker",
        help="run the local Kafka broker (KRaft, one node) for the demo and tests",
        description=(
            "Local Apache Kafka broker in KRaft mode (one node, broker+controller). Jars go "
            "to VEILLE_CACHE_DIR, data/logs/broker.json to VEILLE_STATE_DIR/broker. Needs "
            f"Java {MIN_JAVA}+ and Maven (for fetch)."
        ),
    )
    cmds = parser.add_subparsers(dest="broker_command", metavar="ACTION", required=True)

    p = cmds.add_parser(
        "fetch",
        help="download the Kafka jars into the cache (skipped when cached)",
        description="Run Maven on deploy/broker/pom.xml to copy the Kafka broker jars into "
        "the cache dir. Done once per machine; `start` does it when needed.",
    )
    p.add_argument("--force", action="store_true", help="fetch again even if cached")
    p.set_defaults(func=_cmd_fetch)

    p = cmds.add_parser(
        "start",
        help="start the broker in the background and wait until it answers",
        description="Start the broker detached (or report the one already running). The "
        "storage is formatted on first start; the port of the previous start is reused.",
    )
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help="client port on 127.0.0.1 (default: previous one, else a free one)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=STARTUP_TIMEOUT,
        help="seconds to wait for the broker to answer (default %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print the broker info as JSON")
    p.add_argument("--nodes", type=int, default=1,
                   help="1 (default): the single-node broker; 3: a local KRaft cluster of combined "
                        "broker+controller nodes, replication factor 3, min.insync.replicas 2")
    p.add_argument(
        "--no-auth",
        dest="auth",
        action="store_false",
        default=None,
        help="PLAINTEXT client listener, no SASL and no ACLs (default: VEILLE_BROKER_AUTH, on)",
    )
    p.set_defaults(func=_cmd_start)

    p = cmds.add_parser(
        "stop",
        help="stop the broker gracefully (SIGTERM, then SIGKILL)",
        description="Send SIGTERM to the recorded broker process and wait; SIGKILL after "
        "--timeout. Data and ports are kept for the next start.",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL (default %(default)s)")
    p.set_defaults(func=_cmd_stop)

    p = cmds.add_parser(
        "restart",
        help="stop and start again on the same port",
        description="Graceful stop then start on the same ports, so clients keep working.",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds before SIGKILL when stopping (default %(default)s)",
    )
    p.set_defaults(func=_cmd_restart)

    p = cmds.add_parser(
        "status",
        help="tell whether the broker runs and answers (exit 0 running, 3 not)",
        description="Print whether the recorded broker process runs and answers a metadata "
        f"request. Exit status 0 when running, {EXIT_NOT_RUNNING} when not.",
    )
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=_cmd_status)


def main(argv: list[str] | None = None) -> int:
    """``python -m veille.local.broker_cli ...``: the broker commands alone (no other component)."""
    parser = argparse.ArgumentParser(prog="python -m veille.local.broker_cli")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["broker", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
