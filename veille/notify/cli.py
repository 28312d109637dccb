"""``veille notify run``: tell residents who consented of their incident's progress."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
from types import FrameType

from veille.config import get_settings
from veille.notify.service import Notifier
from veille.notify.settings import LOCAL_LINK_KEY, LOCAL_REFERENCE_KEY, NotifySettings
from veille.runtime import tune_gc
from veille.statedir import write_process_info
from veille.telemetry import serve_metrics
from veille.territory import load_territory
from veille.territory.topics import ensure_territory_topics

log = logging.getLogger("veille.notify")

NOTIFY_INFO = "notify.json"  # in the state dir: PID and metrics URL, for the demo and tests


def _cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    notify = NotifySettings()
    if notify.reference_key.get_secret_value() == LOCAL_REFERENCE_KEY or \
            notify.link_key.get_secret_value() == LOCAL_LINK_KEY:
        log.warning("VEILLE_NOTIFY_REFERENCE_KEY or VEILLE_NOTIFY_LINK_KEY is the local default: set "
                    "keys of your own outside a demo")
    territory = load_territory(settings.territory_dir)
    ensure_territory_topics(settings)
    notifier = Notifier(settings, territory, notify)
    _server, port = serve_metrics(args.metrics_port if args.metrics_port is not None
                                  else settings.metrics_port)
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    info = write_process_info(settings.state_dir / NOTIFY_INFO, metrics=metrics_url)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: committing what was told, then stopping", signum)
        notifier.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # kill -USR1 <pid>: every thread's stack in the log (a notifier that seems stuck says where).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    print(f"notify: following {notifier.topics.routed} for the consents of {notifier.topics.notify_consent}; "
          f"metrics on {metrics_url}", flush=True)
    tune_gc()
    try:
        notifier.run()
    finally:
        info.unlink(missing_ok=True)
    print("notify stopped", flush=True)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("notify", help="tell residents who consented of their incident's progress",
                       description="Reads the routing records and the consents to hear back, and sends one "
                                   "French message (e-mail or SMS) per meaningful change of each incident.")
    nsub = p.add_subparsers(dest="notify_command", metavar="ACTION", required=True)
    run = nsub.add_parser("run", help="run the notifier until SIGTERM/SIGINT")
    run.add_argument("--metrics-port", type=int, default=None,
                     help="port of /metrics (default VEILLE_METRICS_PORT, 0 = any free port)")
    run.set_defaults(func=_cmd_run)
