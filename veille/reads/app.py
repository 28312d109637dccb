"""The read side's HTTP routes on aiohttp: /metrics, /healthz, /indicators, /deadlines, /stats,
the console (``console/``) and the CAP feed (``cap_feed``).

``veille.reads.service`` serves this app in the process that owns the store (the sink, for the
embedded chDB; any process with a ClickHouse URL), on its own event loop in a daemon thread, beside
the sink's pipeline. Store queries are blocking (chDB holds a lock): they run in the default
executor so one slow query never stops /metrics or /healthz from answering.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import ValidationError

from veille.reads import deadlines as dl
from veille.reads.cap_feed import add_cap_routes
from veille.reads.console import ops, pages
from veille.reads.console.access import Credentials, auth_middleware
from veille.reads.console.case import build_case, case_html
from veille.reads.console.chain import build_chain, chain_html
from veille.reads.console.export import export_rows, to_csv
from veille.reads.console.filters import ConsoleFilter, parse_filter
from veille.reads.console.pcs import pcs_html, pcs_rows
from veille.reads.console.report import build_report
from veille.reads.console.sso import ConsoleSso
from veille.reads.console.view import build_view, territory_geojson
from veille.reads.indicators import Cell, compute, parse_cell, totals
from veille.sinks.store import Store
from veille.territory import Territory
from veille.web import assets
from veille.web.assets import AssetsMissing, add_vendor_routes
from veille.web.i18n import page_texts

log = logging.getLogger(__name__)
T = TypeVar("T")
STORE = web.AppKey("store", Store)
TERRITORY = web.AppKey("territory", Territory)
PROMETHEUS = web.AppKey("prometheus", str)


def _static_dir() -> Path:
    return Path(assets.__file__).with_name("static")


async def _blocking(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def _json(body: Any, status: int = 200) -> web.Response:
    # Exactly "application/json", as the http.server handler this replaces answered (clients compare it).
    return web.Response(body=json.dumps(body).encode(), status=status,
                        headers={"Content-Type": "application/json"})


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _filter(request: web.Request) -> ConsoleFilter:
    return parse_filter({k: request.query.getall(k)[-1] for k in request.query})


async def metrics(_request: web.Request) -> web.Response:
    body = generate_latest(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(_request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def indicators(request: web.Request) -> web.Response:
    try:
        cell: Cell = parse_cell(request.query_string)
    except (ValueError, ValidationError) as exc:
        return _error(400, str(exc))
    try:
        return _json(await _blocking(compute, request.app[STORE], cell))
    except Exception as exc:
        log.exception("indicators failed")
        return _error(500, str(exc))


async def deadlines(request: web.Request) -> web.Response:
    """Same cell parameters as /indicators, plus an optional ``now`` (ISO time, for reproducible counts)."""
    try:
        cell: Cell = parse_cell(request.query_string)
        now = datetime.fromisoformat(request.query["now"]) if request.query.get("now") else None
        if now is not None and now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
    except (ValueError, ValidationError) as exc:
        return _error(400, str(exc))
    try:
        rules = request.app[TERRITORY].rules
        return _json(await _blocking(dl.compute, request.app[STORE], cell, rules, now))
    except Exception as exc:
        log.exception("deadlines failed")
        return _error(500, str(exc))


async def stats(request: web.Request) -> web.Response:
    try:
        with_ids = request.query.getall("ids", ["0"])[-1] in ("1", "true")
        return _json(await _blocking(totals, request.app[STORE], with_ids))
    except Exception as exc:
        log.exception("stats failed")
        return _error(500, str(exc))


async def console_page(request: web.Request) -> web.Response:
    return web.Response(text=pages.console_html(request.app[TERRITORY]), content_type="text/html")


async def console_view(request: web.Request) -> web.Response:
    try:
        f = _filter(request)
    except (ValueError, ValidationError) as exc:
        return _error(400, str(exc))
    try:
        return _json(await _blocking(build_view, request.app[STORE], request.app[TERRITORY], f))
    except Exception as exc:
        log.exception("console view failed")
        return _error(500, str(exc))


async def console_territory(request: web.Request) -> web.Response:
    return _json(territory_geojson(request.app[TERRITORY]))


async def export_csv(request: web.Request) -> web.Response:
    try:
        f = _filter(request)
    except (ValueError, ValidationError) as exc:
        return _error(400, str(exc))
    rows = await _blocking(export_rows, request.app[STORE], request.app[TERRITORY], f)
    name = f"veille-{f.start.isoformat()}-{f.end.isoformat()}.csv"
    return web.Response(body=to_csv(rows, page_texts("console")), headers={
        "Content-Type": "text/csv; charset=utf-8", "Content-Disposition": f'attachment; filename="{name}"'})


async def report(request: web.Request) -> web.Response:
    territory = request.app[TERRITORY]
    code = request.query.get("municipality", "")
    try:
        year = int(request.query.get("year", ""))
    except ValueError:
        return _error(400, "year must be a number, e.g. year=2026")
    if code not in territory.municipalities or not 2000 <= year <= 2100:
        return _error(400, "municipality must be an INSEE code of the territory, year between 2000 and 2100")
    data = await _blocking(build_report, request.app[STORE], territory, code, year)
    return web.Response(text=pages.report_html(data), content_type="text/html")


async def chain(request: web.Request) -> web.Response:
    """One incident's chain: dispatches, answers, re-routings, escalations (console/chain.py)."""
    t = page_texts("chain")
    try:
        incident = uuid.UUID(request.query.get("incident", ""))
    except ValueError:
        return _error(400, t["bad_id"])
    data = await _blocking(build_chain, request.app[STORE], incident)
    if data is None:
        return _error(404, t["not_found"])
    return web.Response(text=chain_html(data, request.app[TERRITORY]), content_type="text/html")


async def case_page(request: web.Request) -> web.Response:
    """One case: its reports and its bodies' statuses (console/case.py)."""
    t = page_texts("case")
    try:
        case_id = uuid.UUID(request.query.get("id", ""))
    except ValueError:
        return _error(400, t["bad_id"])
    data = await _blocking(build_case, request.app[STORE], case_id, request.app[TERRITORY])
    if data is None:
        return _error(404, t["not_found"])
    return web.Response(text=case_html(data, request.app[TERRITORY]), content_type="text/html")


async def pcs(request: web.Request) -> web.Response:
    """Per activated municipality, the PCS cascade's counts (console/pcs.py)."""
    try:
        days = int(request.query.get("days", "7"))
    except ValueError:
        return _error(400, "days must be a number")
    if not 1 <= days <= 366:
        return _error(400, "days must be between 1 and 366")
    rows = await _blocking(pcs_rows, request.app[STORE], request.app[TERRITORY], days)
    return web.Response(text=pcs_html(rows, days), content_type="text/html")


async def ops_page(_request: web.Request) -> web.Response:
    return web.Response(text=pages.ops_html(), content_type="text/html")


async def ops_data(request: web.Request) -> web.Response:
    try:
        hours = int(request.query.get("hours", "24"))
    except ValueError:
        return _error(400, "hours must be a number")
    if not 1 <= hours <= 24 * 90:
        return _error(400, "hours must be between 1 and 2160")
    try:
        return _json(await ops.ops_series(request.app[PROMETHEUS], hours))
    except ops.PrometheusUnavailable as exc:
        return _error(503, str(exc))


async def not_found(_request: web.Request) -> web.Response:
    return _error(404, "try /console/, /metrics, /indicators, /deadlines or /stats")


async def root(_request: web.Request) -> web.Response:
    raise web.HTTPFound("/console/")


def make_app(store: Store, territory: Territory | None, credentials: Credentials, host: str,
             prometheus_url: str = "", sso: ConsoleSso | None = None) -> web.Application:
    """Without a territory (its files unreadable) the sink still serves what it served before the
    console: storing events must not depend on the map. ``sso``: the console's single sign-on."""
    sso = sso if territory is not None else None
    middlewares = [sso.middleware] if sso else []
    app = web.Application(middlewares=[*middlewares, auth_middleware(credentials, host, sso=sso is not None)])
    app[STORE] = store
    app[PROMETHEUS] = prometheus_url
    r = app.router
    r.add_get("/metrics", metrics)
    r.add_get("/healthz", healthz)
    r.add_get("/indicators", indicators)
    r.add_get("/stats", stats)
    if territory is None:
        r.add_route("*", "/{tail:.*}", not_found)
        return app
    app[TERRITORY] = territory
    r.add_get("/deadlines", deadlines)
    r.add_get("/", root)
    r.add_get("/console", root)
    r.add_get("/console/", console_page)
    r.add_get("/console/api/view", console_view)
    r.add_get("/console/api/territory", console_territory)
    r.add_get("/console/export.csv", export_csv)
    r.add_get("/console/report", report)
    r.add_get("/console/chain", chain)
    r.add_get("/console/case", case_page)
    r.add_get("/console/pcs", pcs)
    r.add_get("/console/ops", ops_page)
    r.add_get("/console/api/ops", ops_data)
    try:
        add_vendor_routes(app)
    except AssetsMissing:
        # The sink must keep storing events: the console is then broken, and says why in the log.
        log.exception("the console's libraries are missing")
    add_cap_routes(app, store, prefix="/console")  # CAP 1.2 and Atom for agencies' CAP readers
    r.add_static("/static/console", _static_dir(), append_version=False)
    if sso is not None:
        sso.mount(app)  # /console/oidc/...
    r.add_route("*", "/{tail:.*}", not_found)
    return app
