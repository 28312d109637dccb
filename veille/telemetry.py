"""Prometheus exposition shared by every long-running process of the hub.

Each component defines its own metrics next to its code (``producers/metrics.py``, ...)
on the default registry; this module only serves them, so a process started with
``--metrics-port`` answers ``GET /metrics`` the same way whatever it runs.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

from veille.config import get_settings


def serve_metrics(port: int = 0, addr: str | None = None,
                  registry: CollectorRegistry = REGISTRY) -> tuple[Any, int]:
    """Serve ``/metrics`` from a daemon thread; returns ``(server, bound_port)``.

    ``port=0`` binds a free port (tests, several processes on one host); the actual port
    is read back from the socket. ``addr`` defaults to ``$VEILLE_METRICS_HOST`` or
    127.0.0.1. Call ``server.shutdown()`` to stop it.
    """
    host = addr or get_settings().metrics_host
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server, int(server.server_address[1])


def enable_crash_tracebacks() -> None:
    """Dump every thread's Python traceback to stderr (the process's log) on a fatal signal.

    Called at process start (``veille.cli.main``) and again by code that loads a library
    installing its own fatal-signal handlers: chDB (embedded ClickHouse) replaces SIGSEGV's
    handler when the store opens, and then an external SIGSEGV leaves no trace and does not
    even end the process. Re-enabling puts faulthandler first; it chains to the previous
    handler once the tracebacks are written.
    """
    import faulthandler
    import io
    import sys

    # stderr may be replaced by an object without a file descriptor (main() called in-process,
    # under pytest's capture): then the process's real stderr, else nothing to do.
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.fileno()
                break
        except (AttributeError, ValueError, io.UnsupportedOperation):
            continue
    else:
        return
    faulthandler.disable()
    faulthandler.enable(file=stream, all_threads=True)

