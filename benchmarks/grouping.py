"""Section 6c of ``make bench``: the router with grouping on (docs/grouping.md), beside off.

Both on the same storm reports (``producers/storm.py``: located flood reports of 40 spots, a few
without coordinates or sensitive): the drain rate of one ``veille router run`` over pre-filled
intake topics (with grouping on, a groupable report becomes one record on ``<p>.grouping``
instead of its dispatches and routing record; the grouping worker is not running: this is the
router's cost), and the p50/p99 of ``Router.process`` per message, without Kafka.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta

from benchmarks.drain import drain
from benchmarks.results import Report
from veille.config import Settings
from veille.kafka import Message
from veille.producers.storm import storm
from veille.streams.router import Router
from veille.territory import Territory
from veille.topics import Topics


def process_latencies(territory: Territory, grouping: bool, messages: list[Message],
                      passes: int = 3) -> list[float]:
    """Seconds per ``Router.process`` call (each message judged alone: no batch dedup)."""
    router = Router(territory, Topics("bench"), pseudonym_key=b"k", dispatch_key=b"d", grouping=grouping)
    out: list[float] = []
    for _ in range(passes):
        for msg in messages:
            t0 = time.perf_counter()
            router.process(msg)
            out.append(time.perf_counter() - t0)
    return out


def bench_grouping(report: Report, settings: Settings, territory: Territory, n: int) -> None:
    sec = "6c. grouping: the router with grouping on beside off (storm reports)"
    s = storm(territory, seed=1, start=datetime.now(UTC) - timedelta(hours=1))
    topics = Topics("bench")
    messages = [Message(topics.intake(i.municipality), 0, k, i.id.bytes, i.encode())
                for k, i in enumerate(s.incidents)]
    for grouping in (False, True):
        lat = sorted(process_latencies(territory, grouping, messages))
        p50, p99 = statistics.median(lat), lat[int(len(lat) * 0.99)]
        report.add(sec, f"Router.process p99, grouping {'on' if grouping else 'off'}", p99 * 1e6, "µs",
                   note=f"p50 {p50 * 1e6:.1f} µs over {len(lat):,} calls")
    rates = {}
    for grouping in (False, True):
        what = f"router grouping {'on' if grouping else 'off'}"
        d = drain(settings.model_copy(update={"grouping": grouping}), s.incidents, n, what=what)
        rates[grouping] = d.steady
        report.add(sec, f"router drain, grouping {'on' if grouping else 'off'}", d.steady, "ev/s",
                   note=f"{d.overall:,.0f}/s from the process start; {d.cpu:.1f} CPU s")
    report.add(sec, "drain with grouping on / off", 100 * rates[True] / rates[False], "%")


__all__ = ["bench_grouping", "process_latencies"]
