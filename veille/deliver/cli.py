"""``veille deliver run``: push every dispatch to its body (webhook, e-mail, Open311)."""

from __future__ import annotations

import argparse
import logging
import signal
from types import FrameType

from veille.config import get_settings
from veille.deliver.service import Deliverer
from veille.deliver.settings import DeliverySettings
from veille.runtime import tune_gc
from veille.statedir import write_process_info
from veille.telemetry import serve_metrics
from veille.territory import load_territory
from veille.territory.topics import ensure_territory_topics

log = logging.getLogger("veille.deliver")

DELIVER_INFO = "deliver.json"  # in the state dir: PID and metrics URL, for the demo and tests


def _cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    territory = load_territory(settings.territory_dir)
    ensure_territory_topics(settings)
    deliverer = Deliverer(settings, territory, DeliverySettings())
    _server, port = serve_metrics(args.metrics_port if args.metrics_port is not None
                                  else settings.metrics_port)
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    info = write_process_info(settings.state_dir / DELIVER_INFO, metrics=metrics_url)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: committing what was delivered, then stopping", signum)
        deliverer.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    methods = sorted({m.value for a in territory.agencies.values() for m in a.delivery.methods})
    print(f"deliver: {len(territory.agencies)} dispatch topics by {', '.join(methods)}; metrics on "
          f"{metrics_url}", flush=True)
    tune_gc()
    try:
        deliverer.run()
    finally:
        info.unlink(missing_ok=True)
    print("deliver stopped", flush=True)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deliver", help="push dispatches to the bodies: webhook, e-mail, Open311",
                       description="Reads every dispatch topic and delivers each dispatch by the methods "
                                   "its body is configured for (jurisdiction.yaml, delivery:); commits "
                                   "only what was delivered; receipts on <prefix>.delivery.")
    dsub = p.add_subparsers(dest="deliver_command", metavar="ACTION", required=True)
    run = dsub.add_parser("run", help="run the deliverer until SIGTERM/SIGINT")
    run.add_argument("--metrics-port", type=int, default=None,
                     help="port of /metrics (default VEILLE_METRICS_PORT, 0 = any free port)")
    run.set_defaults(func=_cmd_run)
