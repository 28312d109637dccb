"""The sink's HTTP side: /metrics, /indicators, /stats and the console, served from the process
that owns the store (the routes are in ``veille.reads.console.app``, on aiohttp).

The embedded chDB store can be opened by a single process, so indicators are asked of the
running sink. ``sink.json`` in the state dir tells ``veille indicators`` where it listens.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs

from veille.config import get_settings
from veille.reads.console.access import Credentials
from veille.reads.console.app import ConsoleServer, make_app
from veille.reads.indicators import Cell
from veille.sinks.store import Store
from veille.statedir import live_process_info, write_process_info
from veille.territory import Territory, load_territory

log = logging.getLogger(__name__)

SINK_INFO = "sink.json"


def parse_cell(query: str) -> Cell:
    """``municipalities=35001,35002&from=2026-01-01&to=2026-02-01`` → Cell (raises ValueError)."""
    qs = parse_qs(query)

    def one(name: str) -> str:
        values = qs.get(name)
        if not values:
            raise ValueError(f"missing parameter {name!r}")
        return values[-1]

    munis = [m.strip() for v in qs.get("municipalities", []) for m in v.split(",") if m.strip()]
    return Cell(municipalities=munis, start=date.fromisoformat(one("from")),
                end=date.fromisoformat(one("to")))


def serve(store: Store, port: int = 0, host: str = "127.0.0.1", territory: Territory | None = None,
          credentials: Credentials | None = None, prometheus_url: str | None = None) -> ConsoleServer:
    """Start the HTTP side (aiohttp, see ``veille.reads.console.app``) in a daemon thread;
    ``shutdown()`` + ``server_close()`` to stop it. Credentials and Prometheus default to the settings'."""
    settings = get_settings()
    if credentials is None:
        credentials = Credentials(settings.console_token, settings.console_user, settings.console_password)
    if prometheus_url is None:
        prometheus_url = settings.prometheus_url
    if territory is None:
        try:
            # Not strict: a territory with gaps still draws; the router is the one that refuses it.
            territory = load_territory(settings.territory_dir, strict=False)
        except Exception:
            log.exception("territory unreadable: /metrics, /indicators and /stats without the console")
    app = make_app(store, territory, credentials, host, prometheus_url)
    return ConsoleServer(app, host, port)


def write_sink_info(state_dir: Path, url: str) -> Path:
    return write_process_info(state_dir / SINK_INFO, url=url)


def running_sink_url(state_dir: Path) -> str | None:
    """URL of the sink recorded in the state dir, if its process is still alive."""
    info = live_process_info(state_dir / SINK_INFO)
    return None if info is None or "url" not in info else str(info["url"])
