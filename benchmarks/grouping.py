"""Section 6c of ``make bench``: the router with grouping on (docs/grouping.md), beside off.

Both on the same storm reports (``producers/storm.py``: located flood reports of 40 spots, a few
without coordinates or sensitive): the drain rate of one ``veille router run`` over pre-filled
intake topics (with grouping on, a groupable report becomes one record on ``<p>.grouping``
instead of its dispatches and routing record; the grouping worker is not running: this is the
router's cost), the p50/p99 of ``Router.process`` per message, without Kafka, and the latency a
body sees: the storm published at a steady rate into a router (and, with grouping on, the
grouping worker: one more hop through ``<p>.grouping``), from each report's publication to the
Kafka timestamp of its routing record (written with its dispatches, by the router or by the
grouping worker), p50/p99/max.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from confluent_kafka import Consumer, Producer

from benchmarks.drain import drain, fresh, worker_env
from benchmarks.pipeline import Child, say
from benchmarks.results import Report
from veille.config import Settings
from veille.kafka import Message
from veille.producers.storm import storm
from veille.schemas import codec
from veille.schemas.models import Incident
from veille.streams.router import Router
from veille.territory import Territory
from veille.topics import Topics

LATENCY_RATE = 100.0  # reports/s: the storm's 2,000 reports in 20 s, a flash flood's peak


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


@dataclass(frozen=True)
class Routed:
    latencies: list[float]  # seconds from each report's publication to its routing record, sorted
    span: float  # seconds from the first publication to the last routing record

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.span


def publication_latency(settings: Settings, incidents: list[Incident], rate: float | None, *,
                        grouping: bool, timeout: float = 300) -> Routed:
    """Each report's publication to its first routing record, published at ``rate``/s (None: at
    once, a burst: then ``span`` is the drain through the router and the grouping worker)."""
    s = fresh(settings.model_copy(update={"grouping": grouping}), "lat")
    logs = s.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    topics = Topics(s.topic_prefix)
    # State dirs of this run's own: the grouping worker's RocksDB files are named after its table,
    # not after the topics, and a second run in the same dir would find the first one's offsets.
    children = [Child("router", ["router", "run", "--metrics-port", "0"],
                      worker_env(s, f"router-{s.topic_prefix}", settings.cache_dir), logs)]
    if grouping:
        children.append(Child("grouping", ["router", "grouping", "--metrics-port", "0"],
                              worker_env(s, f"grouping-{s.topic_prefix}", settings.cache_dir), logs))
    consumer = Consumer({**s.kafka_client_config(), "group.id": f"lat-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topics.routed])
    producer = Producer({**s.kafka_client_config(), "linger.ms": 1, "enable.idempotence": True,
                         "acks": "all"})
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}

    def read(wait: float) -> None:
        for msg in consumer.consume(1000, timeout=wait):
            if msg.error() is not None or msg.value() is None:
                continue
            decoded = codec.decode(msg.value())
            rid = str(decoded.value.get("id"))
            if decoded.record_type == "RoutedIncident" and rid in sent and rid not in seen:
                seen[rid] = msg.timestamp()[1] / 1000 - sent[rid]

    try:
        # Warm-up: both processes in their groups and routing before the clock starts.
        warm = incidents[0].model_copy(update={"id": uuid.uuid4()})
        sent[str(warm.id)] = time.time()
        producer.produce(topics.intake(warm.municipality), key=warm.id.bytes, value=warm.encode())
        producer.flush(30)
        deadline = time.monotonic() + timeout
        while str(warm.id) not in seen:
            if time.monotonic() > deadline:
                raise TimeoutError("the warm-up report was never routed:\n" + children[-1].tail())
            read(0.5)
        seen.clear()
        at = "at once" if rate is None else f"at {rate:.0f}/s"
        say(f"latency (grouping {'on' if grouping else 'off'}): {len(incidents):,} reports {at}")
        start = time.monotonic()
        for k, inc in enumerate(incidents):
            while rate is not None and time.monotonic() < start + k / rate:
                read(0)
                time.sleep(0.001)
            sent[str(inc.id)] = time.time()
            producer.produce(topics.intake(inc.municipality), key=inc.id.bytes, value=inc.encode())
            producer.poll(0)
        producer.flush(30)
        wanted = {str(i.id) for i in incidents}
        deadline = time.monotonic() + timeout
        while not wanted <= set(seen) and time.monotonic() < deadline:
            read(0.5)
        if not wanted <= set(seen):
            raise TimeoutError(f"{len(wanted - set(seen))} reports never routed")
        first = min(sent[i] for i in wanted)
        return Routed(sorted(seen[i] for i in wanted), max(sent[i] + seen[i] for i in wanted) - first)
    finally:
        consumer.close()
        for c in children:
            c.stop()


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
    for grouping in (False, True):
        burst = publication_latency(settings, list(s.incidents), None, grouping=grouping)
        on = "on" if grouping else "off"
        report.add(sec, f"storm burst routed, grouping {on}", burst.rate, "reports/s",
                   note=f"{len(burst.latencies):,} reports published at once, the last routed after "
                        f"{burst.span:.1f} s" + (" (router and grouping worker)" if grouping else ""))
        lat = publication_latency(settings, list(s.incidents), LATENCY_RATE, grouping=grouping).latencies
        p50, p99 = statistics.median(lat), lat[int(len(lat) * 0.99)]
        what = f"publication to routing p99, grouping {'on' if grouping else 'off'}"
        report.add(sec, what, p99 * 1e3, "ms",
                   note=f"p50 {p50 * 1e3:.0f} ms, max {lat[-1] * 1e3:.0f} ms; {len(lat):,} storm reports "
                        f"at {LATENCY_RATE:.0f}/s")


__all__ = ["bench_grouping", "process_latencies"]
