"""The console's ops page: dead letters by reason and unroutable events over time.

Refused events never reach the store (docs/indicators.md), so their history is the router's and
the sink's Prometheus counters: the page asks the Prometheus server named by
``VEILLE_PROMETHEUS_URL`` (``query_range``), server-side, so browsers need no access to it.
"""

from __future__ import annotations

import math
import time
from typing import Any

import aiohttp

MAX_POINTS = 200
QUERIES = {
    "router_dead_letters": "sum by (reason) (increase(veille_router_dead_lettered_total[{step}s]))",
    "sink_dead_letters": "sum by (reason) (increase(veille_sink_dead_lettered_total[{step}s]))",
    "unroutable": "sum(increase(veille_router_unroutable_total[{step}s]))",
}


class PrometheusUnavailable(RuntimeError):
    pass


def step_for(hours: int) -> int:
    """Seconds between points: at most MAX_POINTS points, never below one minute."""
    return max(60, math.ceil(hours * 3600 / MAX_POINTS / 60) * 60)


def align(result: list[dict[str, Any]], timestamps: list[int], label: str) -> dict[str, list[float | None]]:
    """Prometheus matrix → {label value: values on the common timestamps} (gaps are None)."""
    index = {t: i for i, t in enumerate(timestamps)}
    out: dict[str, list[float | None]] = {}
    for series in result:
        key = series["metric"].get(label, "total")
        values: list[float | None] = [None] * len(timestamps)
        for t, v in series["values"]:
            i = index.get(int(float(t)))
            if i is not None and math.isfinite(float(v)):
                values[i] = round(float(v), 3)
        out[key] = values
    return out


async def ops_series(prometheus_url: str, hours: int, now: float | None = None) -> dict[str, Any]:
    if not prometheus_url:
        raise PrometheusUnavailable("VEILLE_PROMETHEUS_URL is not set")
    step = step_for(hours)
    end = int((now or time.time()) // step * step)
    start = end - hours * 3600
    timestamps = list(range(start, end + 1, step))
    out: dict[str, Any] = {"hours": hours, "step": step, "timestamps": timestamps}
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for name, query in QUERIES.items():
            params = {"query": query.format(step=step), "start": str(start), "end": str(end),
                      "step": str(step)}
            url = f"{prometheus_url.rstrip('/')}/api/v1/query_range"
            try:
                async with session.get(url, params=params) as resp:
                    body = await resp.json()
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise PrometheusUnavailable(f"{prometheus_url}: {exc}") from exc
            if body.get("status") != "success":
                raise PrometheusUnavailable(f"{prometheus_url}: {body.get('error', body)}")
            out[name] = align(body["data"]["result"], timestamps, "reason")
    out["totals"] = {name: {k: round(sum(v for v in vals if v is not None), 1)
                            for k, vals in out[name].items()} for name in QUERIES}
    return out
