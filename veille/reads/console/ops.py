"""The console's ops page: dead letters by reason, unroutable events and quarantined sources.

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
# Raw counters, differenced here rather than with increase(): a reason's counter is created by
# its first dead letter, at 1, and increase() would never count that first one.
QUERIES = {
    "router_dead_letters": ("sum by (reason) (veille_router_dead_lettered_total)", "reason"),
    "sink_dead_letters": ("sum by (reason) (veille_sink_dead_lettered_total)", "reason"),
    "unroutable": ("sum(veille_router_unroutable_total)", "reason"),
    # Sources quarantined by the router (streams/quarantine.py): their invalid messages written
    # as range letters over the period, per source.
    "quarantined": ("sum by (source) (veille_router_quarantined_messages_total)", "source"),
}
# A gauge, read as is: the sources quarantined at the end of the period.
QUARANTINED_NOW = "max by (source) (veille_router_source_quarantined)"


class PrometheusUnavailable(RuntimeError):
    pass


def step_for(hours: int) -> int:
    """Seconds between points: at most MAX_POINTS points, never below one minute."""
    return max(60, math.ceil(hours * 3600 / MAX_POINTS / 60) * 60)


def increments(result: list[dict[str, Any]], timestamps: list[int], label: str) -> dict[str, list[float]]:
    """Counter samples (Prometheus matrix) → {label value: events per step on the timestamps}.

    A series first seen after the range's start began at 0 (its first sample is all increase); a
    drop is a restart (the counter began again at 0)."""
    index = {t: i for i, t in enumerate(timestamps)}
    out: dict[str, list[float]] = {}
    for series in result:
        key = series["metric"].get(label, "total")
        steps = [0.0] * len(timestamps)
        previous: float | None = None
        for t, raw in series["values"]:
            i = index.get(int(float(t)))
            value = float(raw)
            if i is None or not math.isfinite(value):
                continue
            if previous is None:
                previous = value if i == 0 else 0.0
            steps[i] = round(value - previous if value >= previous else value, 3)
            previous = value
        out[key] = steps
    return out


async def ops_series(prometheus_url: str, hours: int, now: float | None = None) -> dict[str, Any]:
    if not prometheus_url:
        raise PrometheusUnavailable("VEILLE_PROMETHEUS_URL is not set")
    step = step_for(hours)
    # The last point at or after now: a dead letter of the last minute is on the chart.
    end = int(math.ceil((now or time.time()) / step) * step)
    start = end - hours * 3600
    timestamps = list(range(start, end + 1, step))
    out: dict[str, Any] = {"hours": hours, "step": step, "timestamps": timestamps}
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def query_range(query: str) -> list[dict[str, Any]]:
            params = {"query": query, "start": str(start), "end": str(end), "step": str(step)}
            url = f"{prometheus_url.rstrip('/')}/api/v1/query_range"
            try:
                async with session.get(url, params=params) as resp:
                    body = await resp.json()
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise PrometheusUnavailable(f"{prometheus_url}: {exc}") from exc
            if body.get("status") != "success":
                raise PrometheusUnavailable(f"{prometheus_url}: {body.get('error', body)}")
            result: list[dict[str, Any]] = body["data"]["result"]
            return result

        for name, (query, label) in QUERIES.items():
            out[name] = increments(await query_range(query), timestamps, label)
        now_series = await query_range(QUARANTINED_NOW)
    out["totals"] = {name: {k: round(sum(vals), 1) for k, vals in out[name].items()} for name in QUERIES}
    out["quarantined_now"] = sorted(
        s["metric"].get("source", "") for s in now_series if s["values"] and float(s["values"][-1][1]) == 1)
    return out
