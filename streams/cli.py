"""``veille router run``: the faust worker plus its /metrics endpoint and lag probe."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from typing import TYPE_CHECKING

from veille.config import get_settings
from veille.kafka import CommittedLag
from veille.runtime import tune_gc
from veille.statedir import write_process_info
from veille.streams import metrics
from veille.streams.membership import check_stall_window, stall_reason
from veille.telemetry import serve_metrics
from veille.topics import Topics

if TYPE_CHECKING:  # faust is imported by the commands that run a worker, not by `veille --help`
    import faust

    from veille.config import Settings

log = logging.getLogger("veille.router")
LAG_INTERVAL = 5.0
EXIT_STALLED = 4
EXIT_BAD_CONFIG = 2
ROUTER_INFO = "router.json"  # in the state dir: PID and metrics URL, for the demo and tests
ESCALATIONS_INFO = "escalations.json"
GROUPING_INFO = "grouping.json"


def _lag_probe(conf: dict[str, str | int | float | bool], group: str, topics: list[str],
               stop: threading.Event, stall_seconds: float, join_limit: float) -> None:
    """Publish the group's lag; exit the process if its partitions have a backlog but no progress.

    After some broker restarts the faust consumer never resumes fetching (seen in the fault
    tests). A router that is alive but stuck is worse than one that exits: its supervisor
    (compose ``restart``, Kubernetes) starts a fresh one, which takes its place in the group
    at once (static membership) and resumes from the committed offsets, so nothing is lost.
    Joining and rebalancing are not stalls (``membership.stall_reason``).
    """
    probe = CommittedLag(conf, group, topics)
    while not stop.wait(LAG_INTERVAL):
        try:
            lags = probe.lag()
        except Exception as exc:  # the probe must never take the router down
            log.warning("lag probe failed: %r", exc)
            continue
        for (topic, partition), lag in lags.items():
            metrics.CONSUMER_LAG.labels(group, topic, str(partition)).set(lag)
        reason = stall_reason(metrics.PROGRESS, lags, stall_seconds, join_limit)
        if reason:
            log.critical("%s: exiting so that the supervisor restarts the router", reason)
            metrics.STALLED.inc()
            logging.shutdown()
            os._exit(EXIT_STALLED)
    probe.close()


def _cmd_run(args: argparse.Namespace) -> int:
    from veille.streams.app import create_app, router_source_topics
    from veille.streams.worker import Worker
    from veille.territory.topics import ensure_territory_topics

    settings = get_settings()
    problem = check_stall_window(settings)
    if problem:
        print(f"veille router run: refusing to start: {problem}", file=sys.stderr, flush=True)
        return EXIT_BAD_CONFIG
    ensure_territory_topics(settings)
    app = create_app(settings)
    _server, port = serve_metrics(args.metrics_port if args.metrics_port is not None
                                  else settings.metrics_port)
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    write_process_info(settings.state_dir / ROUTER_INFO, metrics=metrics_url)
    print(f"router: consuming intake/alerts/status; metrics on {metrics_url}", flush=True)
    stop = threading.Event()
    # A join may legitimately wait for a session timeout and a whole rebalance; beyond that
    # plus the stall window, with a backlog, the consumer is stuck and a restart is better.
    join_limit = (settings.router_stall_seconds + app.conf.broker_session_timeout
                  + app.conf.broker_rebalance_timeout)
    threading.Thread(target=_lag_probe, args=(settings.kafka_client_config(), app.conf.id,
                                              router_source_topics(settings), stop,
                                              settings.router_stall_seconds, join_limit),
                     daemon=True).start()
    log.info("group %s, static member %s", app.conf.id, app.conf.consumer_group_instance_id)
    worker = Worker(app, loglevel=args.log_level, quiet=True, redirect_stdouts=False,
                    stop_seconds=settings.router_stop_seconds)
    # faust's terminal spinner sets the root logger to DEBUG: every aiokafka debug record
    # is then built and dropped (~10% of the router's time, profiled).
    worker.spinner = None
    tune_gc()
    try:
        worker.execute_from_commandline()  # returns/raises SystemExit on SIGTERM/SIGINT
    finally:
        stop.set()
    return 0


def _start_worker(args: argparse.Namespace, settings: Settings, info: str, what: str) -> None:
    """A follow-up worker's start: its /metrics, its process info file, one line on stdout."""
    port_arg = args.metrics_port if args.metrics_port is not None else settings.metrics_port
    _server, port = serve_metrics(port_arg)
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    write_process_info(settings.state_dir / info, metrics=metrics_url)
    print(f"{what}; metrics on {metrics_url}", flush=True)


def _execute(args: argparse.Namespace, app: faust.App) -> None:
    import faust

    worker = faust.Worker(app, loglevel=args.log_level, quiet=True, redirect_stdouts=False)
    worker.spinner = None  # see _cmd_run
    worker.execute_from_commandline()


def _cmd_escalations(args: argparse.Namespace) -> int:
    """The re-routing and escalation worker (streams/escalation.py): its own faust app and group."""
    from veille.streams.escalation import create_escalation_app
    from veille.territory.topics import ensure_territory_topics

    settings = get_settings()
    ensure_territory_topics(settings)
    app = create_escalation_app(settings)
    _start_worker(args, settings, ESCALATIONS_INFO,
                  f"escalations: consuming {settings.topic_prefix}.routed")
    _execute(args, app)
    return 0


def _cmd_grouping(args: argparse.Namespace) -> int:
    """The grouping worker (streams/grouping.py, docs/grouping.md): its own faust app and group."""
    from veille.streams.grouping import create_grouping_app
    from veille.territory.topics import ensure_territory_topics

    settings = get_settings()
    ensure_territory_topics(settings)
    app = create_grouping_app(settings)
    _start_worker(args, settings, GROUPING_INFO,
                  f"grouping: consuming {settings.topic_prefix}.grouping")
    # The router's watchdog: lag published, and an exit when a backlog sees no progress (a table
    # recovery that stalls) so that the supervisor starts a fresh worker.
    stop = threading.Event()
    join_limit = (settings.router_stall_seconds + app.conf.broker_session_timeout
                  + app.conf.broker_rebalance_timeout)
    threading.Thread(target=_lag_probe, args=(settings.kafka_client_config(), app.conf.id,
                                              [Topics(settings.topic_prefix).grouping], stop,
                                              settings.router_stall_seconds, join_limit),
                     daemon=True).start()
    try:
        _execute(args, app)
    finally:
        stop.set()
    return 0


def _worker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="port of /metrics (default VEILLE_METRICS_PORT, 0 = any free port)")
    parser.add_argument("--log-level", default="warn", choices=["crit", "error", "warn", "info", "debug"])


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("router", help="route events to the agencies that must act (faust worker)",
                       description="The jurisdiction router: intake/alerts/status in, dispatches, "
                                   "routing records and dead letters out.")
    rsub = p.add_subparsers(dest="router_command", metavar="ACTION", required=True)
    run = rsub.add_parser("run", help="run the router until SIGTERM/SIGINT")
    _worker_options(run)
    run.set_defaults(func=_cmd_run)
    esc = rsub.add_parser("escalations", help="re-route refused dispatches and escalate overdue ones "
                                              "(a faust worker with its own group and tables)")
    _worker_options(esc)
    esc.set_defaults(func=_cmd_escalations)
    grp = rsub.add_parser("grouping", help="group nearby reports into cases (a faust worker with its "
                                           "own group and windowed table, docs/grouping.md)")
    _worker_options(grp)
    grp.set_defaults(func=_cmd_grouping)
