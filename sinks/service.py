"""The sink's HTTP side: /metrics and /indicators, served from the process that owns the store.

The embedded chDB store can be opened by a single process, so indicators are asked of the
running sink. ``sink.json`` in the state dir tells ``veille indicators`` where it listens.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import date
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import ValidationError

from veille.sinks.indicators import Cell, compute, totals
from veille.sinks.store import Store
from veille.statedir import live_process_info, write_process_info

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


class SinkHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], store: Store) -> None:
        super().__init__(address, _Handler)
        self.store = store

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: SinkHTTPServer

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/metrics":
            self._send(HTTPStatus.OK, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
        elif url.path == "/healthz":
            self._json(HTTPStatus.OK, {"status": "ok"})
        elif url.path == "/indicators":
            try:
                cell = parse_cell(url.query)
            except (ValueError, ValidationError) as exc:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                return
            try:
                self._json(HTTPStatus.OK, compute(self.server.store, cell))
            except Exception as exc:
                log.exception("indicators failed")
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(exc)})
        elif url.path == "/stats":
            try:
                with_ids = parse_qs(url.query).get("ids", ["0"])[-1] in ("1", "true")
                self._json(HTTPStatus.OK, totals(self.server.store, with_ids))
            except Exception as exc:
                log.exception("stats failed")
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(exc)})
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "try /metrics, /indicators or /stats"})

    def _json(self, status: HTTPStatus, body: Any) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


def serve(store: Store, port: int = 0, host: str = "127.0.0.1") -> SinkHTTPServer:
    """Start the server in a daemon thread; ``shutdown()`` + ``server_close()`` to stop it."""
    server = SinkHTTPServer((host, port), store)
    threading.Thread(target=server.serve_forever, name="sink-http", daemon=True).start()
    return server


def write_sink_info(state_dir: Path, url: str) -> Path:
    return write_process_info(state_dir / SINK_INFO, url=url)


def running_sink_url(state_dir: Path) -> str | None:
    """URL of the sink recorded in the state dir, if its process is still alive."""
    info = live_process_info(state_dir / SINK_INFO)
    return None if info is None or "url" not in info else str(info["url"])
