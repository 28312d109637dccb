"""The sink's HTTP side: /metrics, /indicators, /stats and the console, served from the process
that owns the store (the routes are in ``veille.reads.app``, on aiohttp).

``serve`` starts it (``ConsoleServer``: aiohttp on its own loop in a daemon thread). The embedded
chDB store can be opened by a single process, so indicators are asked of the running sink.
``sink.json`` in the state dir tells ``veille indicators`` where it listens.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from pathlib import Path

from aiohttp import web

from veille.config import get_settings
from veille.reads.app import make_app
from veille.reads.console.access import Credentials
from veille.reads.console.sso import console_sso
from veille.sinks.store import Store
from veille.statedir import live_process_info, write_process_info
from veille.territory import Territory, load_territory

log = logging.getLogger(__name__)

SINK_INFO = "sink.json"


class ConsoleServer:
    """aiohttp on its own loop in a daemon thread; ``shutdown()`` + ``server_close()`` stop it
    (the names of the http.server it replaced, which the sink and the tests call)."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, host, port)
        self._loop.run_until_complete(site.start())
        bound = self._runner.addresses[0]
        self.server_address = (host, int(bound[1]))
        self._thread = threading.Thread(target=self._loop.run_forever, name="sink-http", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"http://{host}:{port}"

    def shutdown(self) -> None:
        if self._loop.is_closed() or not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def server_close(self) -> None:
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()


def serve(store: Store, port: int = 0, host: str = "127.0.0.1", territory: Territory | None = None,
          credentials: Credentials | None = None, prometheus_url: str | None = None) -> ConsoleServer:
    """Start the HTTP side (aiohttp, see ``veille.reads.app``) in a daemon thread;
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
    sso = None
    if territory is not None:
        try:
            sso = console_sso(settings, territory)
        except Exception:
            # Single sign-on was asked for and cannot work: the console stays closed (a token
            # nobody holds) rather than open to whoever reaches it; /metrics and /healthz stay.
            log.exception("the console's single sign-on is misconfigured: console closed")
            credentials = Credentials(token=secrets.token_urlsafe(32))
    app = make_app(store, territory, credentials, host, prometheus_url, sso=sso)
    return ConsoleServer(app, host, port)


def write_sink_info(state_dir: Path, url: str) -> Path:
    return write_process_info(state_dir / SINK_INFO, url=url)


def running_sink_url(state_dir: Path) -> str | None:
    """URL of the sink recorded in the state dir, if its process is still alive."""
    info = live_process_info(state_dir / SINK_INFO)
    return None if info is None or "url" not in info else str(info["url"])
