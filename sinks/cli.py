"""``veille sink run``, ``veille indicators`` and ``veille store migrate``."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from datetime import date
from types import FrameType

from pydantic import ValidationError

from veille.config import get_settings
from veille.deadletter import TooManyInvalid
from veille.kafka import sink_consumer_settings
from veille.reads import deadlines
from veille.reads.indicators import Cell, compute, render_text
from veille.reads.service import SINK_INFO, running_sink_url, serve, write_sink_info
from veille.runtime import tune_gc
from veille.sinks import broker_health
from veille.sinks.pipeline import SinkPipeline
from veille.sinks.store import open_store
from veille.telemetry import enable_crash_tracebacks
from veille.territory import load_territory

log = logging.getLogger(__name__)


def _cmd_sink_run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    store = open_store(settings)
    enable_crash_tracebacks()  # after chDB installed its own fatal-signal handlers
    store.migrate()
    port = settings.metrics_port if args.port is None else args.port
    server = serve(store, port, args.host)
    info = write_sink_info(settings.state_dir, server.url)
    group = args.group or f"{settings.topic_prefix}.sink"
    # Static membership: a restarted sink takes its predecessor's partitions at once.
    pipeline = SinkPipeline(settings, store, topics=args.topic, group_id=group,
                            extra_consumer_config={**sink_consumer_settings(settings, group),
                                                   **broker_health.stats_config()})

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current batch", signum)
        pipeline.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    tune_gc()
    print(f"sink: {', '.join(pipeline.topics)} → {type(store).__name__} ({settings.clickhouse_database}); "
          f"HTTP {server.url}/metrics {server.url}/indicators", flush=True)
    try:
        stats = pipeline.run()
    except TooManyInvalid as exc:
        log.critical("sink stopped: %s; offsets of the current batch are not committed", exc)
        return 3
    finally:
        server.shutdown()
        server.server_close()
        info.unlink(missing_ok=True)
        store.close()
    print(f"sink stopped: {stats}", flush=True)
    return 0


def _cmd_indicators(args: argparse.Namespace) -> int:
    settings = get_settings()
    try:
        cell = Cell(municipalities=[m.strip() for m in args.municipalities.split(",") if m.strip()],
                    start=date.fromisoformat(args.start), end=date.fromisoformat(args.end))
    except (ValueError, ValidationError) as exc:
        print(f"invalid cell: {exc}", file=sys.stderr)
        return 2
    url = args.url or running_sink_url(settings.state_dir)
    if url:
        query = urllib.parse.urlencode({"municipalities": ",".join(cell.municipalities),
                                        "from": cell.start.isoformat(), "to": cell.end.isoformat()})
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/indicators?{query}", timeout=60) as resp:
                result = json.loads(resp.read())
            with urllib.request.urlopen(f"{url.rstrip('/')}/deadlines?{query}", timeout=60) as resp:
                result["deadlines"] = json.loads(resp.read())
        except (urllib.error.URLError, OSError) as exc:
            print(f"cannot reach the sink at {url}: {exc}", file=sys.stderr)
            return 1
    else:
        # No sink running: the store is free to open here.
        store = open_store(settings)
        try:
            store.migrate()
            result = compute(store, cell)
            result["deadlines"] = deadlines.compute(store, cell, load_territory(settings.territory_dir).rules)
        finally:
            store.close()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(render_text(result), end="")
        print("\n" + deadlines.render_text(result["deadlines"]))
    return 0


def _cmd_console_serve(args: argparse.Namespace) -> int:
    """The console without a sink: for a ClickHouse server (any process may query it), or for the
    embedded store when no sink owns it (a read-only look at a stopped hub's data)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    sink = running_sink_url(settings.state_dir)
    if not settings.clickhouse_url and sink:
        print(f"a sink owns the embedded store and serves the console: {sink}/console/", file=sys.stderr)
        return 1
    store = open_store(settings)
    try:
        store.migrate()
        server = serve(store, args.port, args.host)
    except Exception:
        store.close()
        raise
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _s, _f: stop.set())
    signal.signal(signal.SIGINT, lambda _s, _f: stop.set())
    print(f"console: {server.url}/console/", flush=True)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        store.close()
    return 0


def _cmd_store_migrate(args: argparse.Namespace) -> int:
    settings = get_settings()
    if not settings.clickhouse_url and running_sink_url(settings.state_dir):
        print(f"a sink owns the embedded store (see {settings.state_dir / SINK_INFO}); "
              "it migrates at start", file=sys.stderr)
        return 1
    store = open_store(settings)
    try:
        applied = store.migrate()
    finally:
        store.close()
    print("\n".join(f"applied {name}" for name in applied) or "store schema up to date")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sink", help="the ClickHouse/chDB store sink",
                       description="Consume the routed and delivery topics into the store (offsets "
                                   "committed after each stored batch); serves /metrics and /indicators.")
    ssub = p.add_subparsers(dest="sink_command", metavar="ACTION", required=True)
    run = ssub.add_parser("run", help="run the sink until SIGTERM/SIGINT")
    run.add_argument("--port", type=int, default=None, help="HTTP port (default: settings.metrics_port)")
    run.add_argument("--host", default="127.0.0.1", help="HTTP bind address")
    run.add_argument("--topic", action="append", default=None,
                     help="input topic, repeatable (default: <prefix>.routed and <prefix>.delivery)")
    run.add_argument("--group", default=None, help="consumer group (default: <prefix>.sink)")
    run.set_defaults(func=_cmd_sink_run)

    ind = sub.add_parser("indicators", help="monitoring-cell indicators from the store",
                         description="Indicators of a cell (set of municipalities) over [from, to). "
                                     "Asks the running sink over HTTP, else opens the store.")
    ind.add_argument("--municipalities", required=True, help="INSEE codes, comma-separated")
    ind.add_argument("--from", dest="start", required=True, help="first day (YYYY-MM-DD)")
    ind.add_argument("--to", dest="end", required=True, help="day after the last (YYYY-MM-DD)")
    ind.add_argument("--json", action="store_true", help="print JSON")
    ind.add_argument("--url", default=None, help="sink HTTP address (default: from state_dir/sink.json)")
    ind.set_defaults(func=_cmd_indicators)

    con = sub.add_parser("console", help="the monitoring cells' web console",
                         description="The sink serves the console on its HTTP port; `console serve` "
                                     "serves it alone, on a ClickHouse server's data or on the embedded "
                                     "store when no sink runs.")
    consub = con.add_subparsers(dest="console_command", metavar="ACTION", required=True)
    cs = consub.add_parser("serve", help="serve the console until SIGTERM/SIGINT")
    cs.add_argument("--port", type=int, default=0, help="HTTP port (default: any free port)")
    cs.add_argument("--host", default="127.0.0.1", help="bind address (elsewhere than loopback: set "
                                                         "VEILLE_CONSOLE_TOKEN or USER/PASSWORD)")
    cs.set_defaults(func=_cmd_console_serve)

    st = sub.add_parser("store", help="the analytical store (chDB or ClickHouse)")
    stsub = st.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    mig = stsub.add_parser("migrate", help="apply pending schema migrations (idempotent)")
    mig.set_defaults(func=_cmd_store_migrate)
