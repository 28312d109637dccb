"""``python -m benchmarks`` (``make bench``): the hub's numbers next to their targets, in one run.

On a local Kafka broker started in a temporary state dir (stopped at the end, whatever
happens, as are the router and sink subprocesses), measures:

  1. raw confluent-kafka produce (idempotent, acks=all, the SDK's librdkafka settings,
     ~170-byte Avro values) and consume rates: the reference for everything else;
  2. the SDK's Publisher (models, every delivery acknowledged);
  3. codec encode/decode cost per event;
  4. routing decisions/s of the pure function, and Router.process (one message, no Kafka);
  5. sink rows/s into chDB (Arrow insert path, benchmarks/bench_sink.py);
  6. end to end, sustained: producer → ``veille router run`` → ``veille sink run`` → store;
  7. end-to-end latency at a fixed rate, read from the store (stored_at - reported_at);
  8. delivery to local bodies;
  9. the HTTP intake under 64 concurrent clients beside a bare aiohttp app (benchmarks/intake_http.py).

Numbers vary between runs on a shared 2-core machine; each is measured once (best of
passes for the chDB insert, as bench_sink does) and a miss is printed as a miss.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from types import FrameType

import confluent_kafka
from confluent_kafka.admin import AdminClient

from benchmarks import bench_sink, dedup_memory, router_process
from benchmarks.delivery import bench_delivery
from benchmarks.drain import drain
from benchmarks.grouping import bench_grouping
from benchmarks.intake_http import bench_intake
from benchmarks.kafka_rates import create_topic, encode_and_produce, raw_consume, raw_produce, sdk_publish
from benchmarks.pipeline import (
    Child,
    Feed,
    Hub,
    Phase,
    StoreView,
    fixed_rate,
    hub_env,
    opened_store,
    read_phase,
    scrape,
    sustained,
    total,
    warm_up,
)
from benchmarks.pure import benchmark_routing, codec_costs, router_process_rate
from benchmarks.results import Report, Target, say
from veille.config import Settings
from veille.local.broker import LocalBroker
from veille.producers.sdk import Publisher
from veille.producers.simulator import Simulator, span_for
from veille.schemas.models import Incident
from veille.territory import Territory, load_territory
from veille.territory.routing import route_incident
from veille.territory.topics import territory_topic_specs
from veille.topics import ensure_topics

ROUTING_TARGET = Target(">=", 100_000)
SINK_DECODE_TARGET = Target(">=", 150_000)  # messages/s decoded and turned into rows, one core
SINK_TARGET = Target(">=", 300_000)
SDK_TARGET = Target(">=", 50_000)  # events/s acknowledged, Publisher.publish_many
E2E_TARGET = Target(">=", 10_000)
DRAIN_TARGET = Target(">=", 20_000)
PROCESS_TARGET = Target("<=", 40)  # µs per message
BARE_SHARE_TARGET = Target(">=", 50)  # % of the bare faust agent
PLAIN_SHARE_TARGET = Target(">=", 25)  # % of a plain confluent-kafka consume -> produce loop
LATENCY_TARGET = Target("<=", 1000)  # ms, p99


@dataclass(frozen=True)
class Sizes:
    raw: int = 300_000
    sdk: int = 50_000
    codec: int = 20_000
    routing: int = 200_000
    router_pure: int = 20_000
    sink_rows: int = 200_000
    sink_passes: int = 3
    warm_up: int = 2_000
    sustained_seconds: float = 30.0
    latency_rate: float = 2_000.0
    latency_seconds: float = 20.0
    drain_timeout: float = 120.0
    drain: int = 200_000
    drain_flooded: bool = True
    dedup_ids: int = 1_000_000
    delivery: int = 2_000  # dispatches per body (webhook, e-mail, Open311) in the delivery drain
    delivery_rate: float = 60.0  # dispatches/s in the delivery latency phase
    intake_requests: int = 20_000  # HTTP requests per intake phase (Open311, JSON API, bare app)


QUICK = Sizes(drain=20_000, drain_flooded=False, delivery=300, intake_requests=3_000,
              raw=50_000, sdk=10_000, codec=5_000, routing=50_000, router_pure=5_000, sink_rows=50_000,
              sink_passes=2, warm_up=1_000, sustained_seconds=8.0, latency_seconds=5.0, drain_timeout=60.0)


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through every finally: children, broker


# --------------------------------------------------------------------------- machine


def _java_version() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "?"
    return (out.stderr or out.stdout).splitlines()[0] if (out.stderr or out.stdout) else "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine_lines(kafka_version: str) -> list[str]:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return [
        f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {_cpu_model()}, "
        f"{mem:.0f} GiB, {platform.system()} {platform.release()}",
        f"python {platform.python_version()}; confluent-kafka {version('confluent-kafka')} "
        f"(librdkafka {confluent_kafka.libversion()[0]}); faust-streaming {version('faust-streaming')}; "
        f"chdb {version('chdb')}; pyarrow {version('pyarrow')}",
        f"Kafka {kafka_version} (KRaft, one node, local); {_java_version()}",
    ]


# --------------------------------------------------------------------------- phases


def simulated(territory: Territory, n: int) -> list[Incident]:
    say(f"simulating {n:,} incidents")
    return Simulator(territory, seed=1, start=datetime.now(UTC) - span_for(n)).incidents(n)


def bench_pure(report: Report, sizes: Sizes, territory: Territory, pool: list[Incident],
               workdir: Path) -> None:
    say("codec, routing, Router.process (no broker)")
    c = codec_costs(pool[:sizes.codec])
    sec = f"3. codec (one ~{c.payload_bytes:.0f}-byte incident)"
    report.add(sec, "codec.encode (Avro dict -> bytes)", c.encode_us, "µs")
    report.add(sec, "codec.decode (bytes -> Avro dict)", c.decode_us, "µs")
    report.add(sec, "Incident.encode (model -> bytes, SDK side)", c.model_encode_us, "µs")
    report.add(sec, "Incident.decode (bytes -> validated model)", c.model_decode_us, "µs")

    sec = "4. routing (pure, in process)"
    report.add(sec, "route_incident decisions", benchmark_routing(sizes.routing, territory), "/s",
               ROUTING_TARGET, f"benchmarks.pure.benchmark_routing({sizes.routing:,})")
    router_process_rate(pool[:2000], territory)  # warm: plan, caches
    rate, outputs = router_process_rate(pool[:sizes.router_pure], territory)
    report.add(sec, "Router.process per message", 1e6 / rate, "µs", PROCESS_TARGET,
               note=f"{rate:,.0f} msg/s; one intake message -> {outputs:.1f} outputs (dispatches + "
                    "routed record), decode..encode, no Kafka: the faust router's ceiling")
    floor = c.decode_us + c.encode_us
    report.add(sec, "Router.process / codec floor (one decode + one encode, same run)", 1e6 / rate / floor,
               "x", note=f"floor {floor:,.1f} µs; {_load()}")
    # What the router runs: process_batch on batches of 500 (staged reading and routing), in
    # CPU time, so a machine shared with other work gives the figure a quiet one gives.
    p = router_process.measure(territory, pool[:sizes.router_pure], rounds=3)
    report.add(sec, "process_batch per message, CPU", p.process_us, "µs", PROCESS_TARGET,
               note=f"benchmarks/router_process.py: batches of 500, best of 3; codec floor (CPU) "
                    f"{p.floor_us:,.1f} µs, {p.process_us / p.floor_us:,.1f}x it; {_load()}")
    say(f"router memory with {sizes.dedup_ids:,} ids in the dedup window (own process)")
    m = dedup_memory.measure(sizes.dedup_ids)
    report.add(sec, f"router RSS, {m.ids:,} ids in the dedup window", m.full_mb, "MB",
               note=f"{m.base_mb:,.0f} MB with the window empty; {m.per_id_bytes:,.0f} bytes per id")

    say(f"sink: {sizes.sink_rows:,} rows into chDB x {sizes.sink_passes} passes")
    # In its own process, as the sink runs (bench_sink.measure_in_a_process says why).
    s = bench_sink.measure_in_a_process(sizes.sink_rows, 10_000, sizes.sink_passes, workdir=workdir)
    sec = "5. sink into chDB (Arrow insert path)"
    report.add(sec, "insert into incidents (+ view), best pass", s.best, "rows/s", SINK_TARGET,
               f"median {s.median:,.0f} rows/s over {s.passes} passes of {s.total:,} rows, batches of "
               f"{s.batch:,}; {s.stored:,} distinct after the passes")
    report.add(sec, "to_rows (plain values -> Arrow)", s.to_rows_rate, "rec/s")
    report.add(sec, "decode (Avro -> checked plain values)", s.decode_rate, "msg/s")
    report.add(sec, "decode + rows, one core", s.decode_rows_rate, "msg/s", SINK_DECODE_TARGET,
               note="the sink's Python work per message; the generated reader "
                    "(schemas/avro_readers.py) is most of it")


def bench_kafka(report: Report, settings: Settings, sizes: Sizes, territory: Territory,
                pool: list[Incident]) -> None:
    s = settings.model_copy(update={"topic_prefix": f"bench{uuid.uuid4().hex[:8]}"})
    ensure_topics(AdminClient(s.kafka_client_config()), territory_topic_specs(s))
    raw_topic = f"{s.topic_prefix}.raw"
    create_topic(s, raw_topic, s.partitions)
    payloads = [i.encode() for i in pool[:20_000]]
    size = sum(map(len, payloads)) / len(payloads)
    sec = "1. raw confluent-kafka (reference)"
    say(f"raw produce: {sizes.raw:,} x {size:.0f} bytes to {raw_topic} ({s.partitions} partitions)")
    produced = raw_produce(s, raw_topic, payloads, sizes.raw)
    report.add(sec, "produce, acknowledged", produced.per_second, "msg/s",
               note=f"{produced.count:,} msgs in {produced.seconds:.2f}s; idempotent, acks=all, "
                    f"linger.ms={s.linger_ms}, zstd (the SDK's publisher_config), {size:.0f}-byte values")
    say("raw consume")
    consumed = raw_consume(s, raw_topic, sizes.raw)
    report.add(sec, "consume", consumed.per_second, "msg/s",
               note=f"{consumed.count:,} msgs, first to last message, consume(10000) batches")

    say(f"SDK publish: {sizes.sdk:,} incidents")
    published = sdk_publish(s, pool[:sizes.sdk])
    say(f"encode + produce: {sizes.sdk:,} incidents")
    floor = encode_and_produce(s, raw_topic, pool[:sizes.sdk])
    report.add("2. SDK", "Publisher.publish_many(models), acknowledged", published.per_second, "ev/s",
               SDK_TARGET, f"{published.count:,} incidents in {published.seconds:.2f}s "
                           f"({published.per_second / produced.per_second:.0%} of raw produce, "
                           f"{published.per_second / floor.per_second:.0%} of encode + produce)")
    report.add("2. SDK", "Incident.encode + produce, no SDK (ceiling of a Python publisher)",
               floor.per_second, "ev/s",
               note="the same models encoded then produced, raw producer's callback; the SDK adds "
                    "validation of its input, topic and key choice, delivery bookkeeping and metrics")


def bench_drain(report: Report, settings: Settings, sizes: Sizes, pool: list[Incident]) -> None:
    sec = f"6a. drain {sizes.drain:,} pre-filled incidents (one process per worker)"
    routable = [i for i in pool if route_incident(i, load_territory(settings.territory_dir)).routable]
    # Back to back in one run, each beside the others: on a shared machine only the ratios
    # between them mean much (the load is printed with each).
    plain = drain(settings, routable, sizes.drain, what="plain loop")
    report.add(sec, "plain confluent-kafka consume -> produce loop (acks=all)", plain.steady, "ev/s",
               note=f"{plain.cpu:.1f} CPU s; what Python itself moves; {_load()}")
    one = drain(settings, routable, sizes.drain, what="router")
    report.add(sec, "router, one worker (a stream event per record batch)", one.steady, "ev/s", DRAIN_TARGET,
               note=f"{one.overall:,.0f}/s from the process start (group join included); "
                    f"{one.cpu:.1f} CPU s; {_load()}")
    report.add(sec, "router / plain loop", 100 * one.steady / plain.steady, "%", PLAIN_SHARE_TARGET)
    per_event = drain(settings, routable, sizes.drain, what="router per event")
    report.add(sec, "router, one worker, faust's event per record (router_record_batches=false)",
               per_event.steady, "ev/s", note=f"{per_event.cpu:.1f} CPU s; batches x"
                                             f"{one.steady / per_event.steady:.2f}; {_load()}")
    bare = drain(settings, routable, sizes.drain, what="bare agent")
    report.add(sec, "bare faust agent, event per record (bytes in -> one topic, acks=all)",
               bare.steady, "ev/s",
               note=f"{bare.overall:,.0f}/s from the process start; {bare.cpu:.1f} CPU s: "
                    f"faust's per-event ceiling; {_load()}")
    report.add(sec, "router / bare agent", 100 * one.steady / bare.steady, "%", BARE_SHARE_TARGET)
    if sizes.drain_flooded:
        flooded = drain(settings, routable, sizes.drain, what="router flooded", garbage=sizes.drain)
        report.add(sec, "router, one worker, one source flooding garbage", flooded.steady, "msg/s",
                   note=f"{sizes.drain:,} incidents + {sizes.drain:,} random messages from "
                        f"{routable[0].municipality} (quarantined, range letters); "
                        f"x{flooded.steady / one.steady:.2f} of the clean drain, no exit")
    two = drain(settings, routable, sizes.drain, what="router x2", workers=2)
    report.add(sec, "router, two workers", two.steady, "ev/s",
               note=f"x{two.steady / one.steady:.2f} of one worker on {os.cpu_count()} cores; "
                    f"{two.cpu:.1f} CPU s; {_load()}")


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f} (1/5 min)"


def bench_deliver(report: Report, settings: Settings, sizes: Sizes, workdir: Path) -> None:
    sec = f"8. delivery to local bodies ({sizes.delivery:,} dispatches per body, one deliverer)"
    d = bench_delivery(settings, sizes.delivery, sizes.latency_seconds / 2, sizes.delivery_rate, workdir)
    for method, rate in d.rates.items():
        report.add(sec, f"{method}, dispatches/s", rate, "ev/s",
                   note=f"{d.counts[method]:,} received; the three methods side by side on "
                        f"{os.cpu_count()} cores")
    report.add(sec, f"routed -> delivered p50 at {sizes.delivery_rate:.0f}/s", d.p50_ms, "ms",
               note=f"{d.samples} delivered receipts")
    report.add(sec, f"routed -> delivered p99 at {sizes.delivery_rate:.0f}/s", d.p99_ms, "ms", LATENCY_TARGET)


def _cpu_note(phase: Phase, seconds: float) -> str:
    share = ", ".join(f"{name} {cpu / seconds:.0%}" for name, cpu in phase.cpu.items() if not math.isnan(cpu))
    return f"CPU (100% = one core) over the phase: {share}"


def bench_e2e(report: Report, settings: Settings, sizes: Sizes, territory: Territory,
              pool: list[Incident], broker_pid: int) -> None:
    e = settings.model_copy(update={"topic_prefix": f"bench{uuid.uuid4().hex[:8]}"})
    ensure_topics(AdminClient(e.kafka_client_config()), territory_topic_specs(e))
    routable = [i for i in pool if route_incident(i, territory).routable]
    env = hub_env(e)
    env["VEILLE_ROUTER_RECORD_BATCHES"] = str(e.router_record_batches).lower()
    logs = e.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    say(f"end to end on prefix {e.topic_prefix}: starting `veille sink run` and `veille router run` "
        f"(sink batches: {e.sink_batch_rows:,} rows or {e.sink_batch_seconds:g}s)")
    sink: Child | None = None
    router: Child | None = None
    router_m: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    sink_m: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    phases: list[Phase] = []
    try:
        sink = Child("sink", ["sink", "run", "--port", "0"], env, logs)
        router = Child("router", ["router", "run", "--metrics-port", "0"], env, logs)
        sink_url = sink.wait_info(e.state_dir / "sink.json")["url"]
        router_url = router.wait_info(e.state_dir / "router.json")["metrics"]
        hub = Hub(e, sink, router, broker_pid)
        feed = Feed(routable)
        with Publisher(e, client_id="bench-e2e", track_ids=False) as pub:
            took = warm_up(hub, pub, feed, sizes.warm_up)
            say(f"warm-up: {sizes.warm_up:,} incidents stored {took:.1f}s after the first publish "
                f"(router group join, first inserts)")
            say(f"sustained: publishing for {sizes.sustained_seconds:g}s as fast as router + sink absorb")
            phases.append(sustained(hub, pub, feed, sizes.sustained_seconds, sizes.drain_timeout))
            for rate in _latency_rates(sizes):
                say(f"latency: {rate:,.0f} incidents/s for {sizes.latency_seconds:g}s ({_load()})")
                phases.append(fixed_rate(hub, pub, feed, rate, sizes.latency_seconds, sizes.drain_timeout))
        router_m = scrape(router_url)
        sink_m = scrape(f"{sink_url}/metrics")
    finally:
        for child in (router, sink):
            if child is not None:
                code = child.stop()
                say(f"stopped {child.name} (pid {child.pid}, exit {code}); log {child.log_path}")
    views: list[StoreView] = []
    if phases:
        # The sink has exited: the embedded store is ours to read.
        with opened_store(e.chdb_path, e.clickhouse_database) as store:
            views = [read_phase(store, p) for p in phases]
    _report_e2e(report, sizes, phases, views, router_m, sink_m)


def _latency_rates(sizes: Sizes) -> tuple[float, float]:
    """The issue's two latency targets: at the rate asked, and at twice it (a slow phase's headroom)."""
    return sizes.latency_rate, 2 * sizes.latency_rate


def _report_latency(report: Report, label: str, rate: float, sizes: Sizes, lat: Phase, lv: StoreView) -> None:
    sec = f"{label}. latency at {rate:,.0f} ev/s for {sizes.latency_seconds:g}s (from the store)"
    achieved = lat.published / lat.publish_seconds if lat.publish_seconds else 0.0
    report.add(sec, "store check: rows of the phase vs acknowledged", lv.rows, "rows",
               Target("==", lat.published), f"{lv.distinct:,} distinct ids")
    report.add(sec, "stored_at - reported_at, p50", lv.latency_ms["p50"], "ms",
               note=f"publishing rate achieved {achieved:,.0f}/s; all stored "
                    f"{lat.caught_up_seconds or float('nan'):.1f}s after the first publish; {_load()}")
    report.add(sec, "stored_at - reported_at, p99", lv.latency_ms["p99"], "ms", LATENCY_TARGET,
               f"p99.9 {lv.latency_ms['p999']:,.0f} ms, max {lv.latency_ms['max']:,.0f} ms")
    report.add(sec, "router's share (routed_at - reported_at), p50", lv.routed_ms["p50"], "ms",
               note=f"p99 {lv.routed_ms['p99']:,.0f} ms; the rest is routed topic -> sink batch -> insert")
    report.definitions.append(_cpu_note(lat, lat.caught_up_seconds or lat.publish_seconds)
                              + f" [latency phase {label}]")


def _report_e2e(report: Report, sizes: Sizes, phases: list[Phase], views: list[StoreView],
                router_m: dict[tuple[str, tuple[tuple[str, str], ...]], float],
                sink_m: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> None:
    if len(phases) < 3 or len(views) < 3:
        report.add("6b. end to end", "sustained events/s", None, "ev/s", E2E_TARGET, "the run did not finish")
        return
    sus, sv = phases[0], views[0]
    sec = f"6b. end to end, sustained ({sizes.sustained_seconds:g}s publishing)"
    steady = _steady_rate(sus)
    drain = (sus.caught_up_seconds or 0) - sus.publish_seconds
    report.add(sec, "events stored per second", sus.rate, "ev/s", E2E_TARGET,
               f"{sus.stored_at_catch_up:,} incidents stored "
               f"{sus.caught_up_seconds or float('nan'):.1f}s after the first publish "
               f"(publishing {sus.publish_seconds:.1f}s, then drain {drain:.1f}s); "
               f"steady rate while publishing {steady:,.0f}/s")
    report.add(sec, "store check: rows of the phase vs acknowledged", sv.rows, "rows",
               Target("==", sus.published),
               f"{sv.distinct:,} distinct ids; {sus.published:,} incidents acknowledged by Kafka")
    report.add(sec, "latency under saturation, p50", sv.latency_ms["p50"], "ms",
               note=f"p99 {sv.latency_ms['p99']:,.0f} ms; router's share (routed_at - reported_at) "
                    f"p50 {sv.routed_ms['p50']:,.0f} ms, p99 {sv.routed_ms['p99']:,.0f} ms")
    report.definitions.append(_cpu_note(sus, sus.caught_up_seconds or sus.publish_seconds)
                              + " [sustained phase]")
    report.definitions.append("stored incidents during the sustained phase (t: stored): " + _timeline(sus))

    for n, (rate, lat, lv) in enumerate(zip(_latency_rates(sizes), phases[1:], views[1:], strict=True)):
        _report_latency(report, f"7{'ab'[n]}", rate, sizes, lat, lv)

    routed = total(router_m, "veille_router_routing_seconds_count")
    if routed:
        per = total(router_m, "veille_router_routing_seconds_sum") / routed * 1e6
        batches = total(router_m, "veille_router_batch_seconds_count")
        batch_ms = total(router_m, "veille_router_batch_seconds_sum") / max(batches, 1) * 1e3
        report.definitions.append(
            f"router /metrics: {routed:,.0f} messages, Router.process {per:,.0f} µs/message on average; "
            f"{batches:,.0f} batches, {routed / max(batches, 1):,.0f} messages/batch, batch (process + "
            f"send + await acks) {batch_ms:,.0f} ms on average; "
            f"dead-lettered {total(router_m, 'veille_router_dead_lettered_total'):,.0f}")
    rows = total(sink_m, "veille_sink_batch_rows_count")
    if rows:
        inserts = total(sink_m, "veille_sink_insert_seconds_count")
        report.definitions.append(
            f"sink /metrics: {rows:,.0f} batches, {total(sink_m, 'veille_sink_batch_rows_sum') / rows:,.0f} "
            f"messages/batch; {inserts:,.0f} inserts, "
            f"{total(sink_m, 'veille_sink_insert_seconds_sum') / max(inserts, 1) * 1e3:,.0f} ms each on "
            f"average ({total(sink_m, 'veille_sink_insert_seconds_sum'):,.1f}s in inserts in all)")
    report.definitions += [
        "6a. drain rate = pre-filled incidents / seconds from the first committed offset of the "
        "consumer group to the moment its committed offsets cover them all; the bare agent forwards "
        "each message unchanged to one topic through the router's producer.",
        "6b. sustained rate = incidents stored / seconds from the first publish to the moment the sink's "
        "committed offsets on <prefix>.routed covered every acknowledged incident (polled every 0.2s; the "
        "sink commits only after a batch is in the store, and each routed incident is one routed record); "
        "the producer publishes for the whole window, held back only while more than ~3s of the rate so "
        "far (2k..60k incidents; 10k in the first 3s) is published but not yet stored. 'steady rate' = "
        "slope of stored incidents between 20% of the publishing window and its end. Cross-checked by "
        "counting the "
        "phase's rows in the store afterwards.",
        "7. latency = stored_at - reported_at of each of the phase's rows in veille.incidents (rows whose "
        "reported_at lies in the phase's publishing window), quantilesExact in chDB, read after the sink "
        "exited; reported_at = the wall clock when the incident was handed to the Publisher; stored_at = "
        "when the sink started writing the batch (the insert itself, tens of ms, is not included).",
    ]


def _timeline(phase: Phase, step: float = 5.0) -> str:
    points, mark = [], 0.0
    for t, _, stored in phase.timeline:
        if t >= mark:
            points.append(f"{t:.0f}s: {stored:,}")
            mark = t + step
    t, _, stored = phase.timeline[-1]
    return ", ".join([*points, f"end {t:.1f}s: {stored:,}"])


def _steady_rate(phase: Phase) -> float:
    """Slope of stored incidents from 20% of the publishing window to its end."""
    inside = [(t, s) for t, _, s in phase.timeline if t <= phase.publish_seconds]
    begin = [(t, s) for t, s in inside if t >= 0.2 * phase.publish_seconds]
    if len(begin) < 2:
        return float("nan")
    (t0, s0), (t1, s1) = begin[0], begin[-1]
    return (s1 - s0) / (t1 - t0) if t1 > t0 else float("nan")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short phases: a smoke run (~1.5 min)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="publishing window of the sustained end-to-end phase (default 30, quick 8)")
    parser.add_argument("--latency-seconds", type=float, default=None, help="latency phase (default 20)")
    parser.add_argument("--latency-rate", type=float, default=None, help="events/s (default 2000)")
    parser.add_argument("--sink-batch-seconds", type=float, default=None,
                        help="VEILLE_SINK_BATCH_SECONDS of the sink (default: the hub's setting)")
    parser.add_argument("--skip-e2e", action="store_true", help="only the micro-benchmarks (1-5)")
    parser.add_argument("--only-drain", action="store_true",
                        help="only the drain phase (6a): router A/B against the plain loop")
    parser.add_argument("--drain", type=int, default=None, help="incidents pre-filled per drain")
    parser.add_argument("--only-grouping", action="store_true",
                        help="only the grouping phase (6c): the router with grouping on beside off")
    parser.add_argument("--skip-delivery", action="store_true", help="no delivery phase (8)")
    parser.add_argument("--skip-drain", action="store_true", help="no drain phase (6a)")
    parser.add_argument("--router-per-event", action="store_true",
                        help="the router with an event per record (router_record_batches=false): the A/B")
    parser.add_argument("--only-delivery", action="store_true", help="only the delivery phase (8)")
    parser.add_argument("--skip-intake", action="store_true", help="no HTTP intake phase (9)")
    parser.add_argument("--only-intake", action="store_true", help="only the HTTP intake phase (9)")
    parser.add_argument("--only-e2e", action="store_true",
                        help="only the end-to-end phases (6-7), e.g. to try a router or sink change")
    parser.add_argument("--keep", action="store_true", help="keep the temporary state dir (logs, store)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    if args.seconds is not None:
        sizes = replace(sizes, sustained_seconds=args.seconds)
    if args.latency_seconds is not None:
        sizes = replace(sizes, latency_seconds=args.latency_seconds)
    if args.drain is not None:
        sizes = replace(sizes, drain=args.drain)
    if args.latency_rate is not None:
        sizes = replace(sizes, latency_rate=args.latency_rate)
    signal.signal(signal.SIGTERM, _on_sigterm)

    state_dir = Path(tempfile.mkdtemp(prefix="veille-bench-"))
    # Grouping off but in 6c (docs/grouping.md): the other phases measure the router as it was.
    update: dict[str, object] = {"state_dir": state_dir, "bootstrap_servers": "", "clickhouse_url": "",
                                 "grouping": False}
    if args.sink_batch_seconds is not None:
        update["sink_batch_seconds"] = args.sink_batch_seconds
    if args.router_per_event:
        update["router_record_batches"] = False
    settings = Settings().model_copy(update=update)
    broker = LocalBroker(settings)
    report = Report()
    kafka_version = broker.kafka_version
    began = time.monotonic()
    failed: BaseException | None = None
    try:
        territory = load_territory(settings.territory_dir)
        pool = simulated(territory, max(sizes.sdk, 20_000))
        only = (args.only_e2e, args.only_delivery, args.only_drain, args.only_grouping, args.only_intake)
        if not any(only):
            bench_pure(report, sizes, territory, pool, state_dir)
        say(f"starting the local Kafka {kafka_version} broker in {state_dir}")
        info = broker.start(die_with_parent=True)
        say(f"broker pid {info.pid} on {info.bootstrap} ({info.startup_seconds or 0:.1f}s)")
        settings = settings.model_copy(update={"bootstrap_servers": info.bootstrap})
        if args.only_intake:
            bench_intake(report, settings, territory, requests=sizes.intake_requests, clients=64,
                         with_hub=True, logs=state_dir / "logs-intake")
        elif args.only_delivery:
            bench_deliver(report, settings, sizes, state_dir)
        elif args.only_drain:
            bench_drain(report, settings, sizes, pool)
        elif args.only_grouping:
            bench_grouping(report, settings, territory, sizes.drain)
        else:
            if not args.only_e2e:
                bench_kafka(report, settings, sizes, territory, pool)
            if not args.skip_e2e:
                if not args.skip_drain:
                    bench_drain(report, settings, sizes, pool)
                    bench_grouping(report, settings, territory, sizes.drain)
                bench_e2e(report, settings, sizes, territory, pool, info.pid)
                if not args.skip_delivery:
                    bench_deliver(report, settings, sizes, state_dir)
            if not args.skip_intake:
                bench_intake(report, settings, territory, requests=sizes.intake_requests, clients=64,
                             with_hub=True, logs=state_dir / "logs-intake")
    except (Exception, KeyboardInterrupt) as exc:
        failed = exc
        say(f"FAILED: {exc!r}")
    finally:
        if broker.stop(timeout=30):
            say("stopped the local broker")
        if args.keep:
            say(f"kept {state_dir}")
        else:
            shutil.rmtree(state_dir, ignore_errors=True)

    print()
    print("\n".join(machine_lines(kafka_version)))
    print(f"run: {'--quick' if args.quick else 'default'}, {time.monotonic() - began:.0f}s in all, "
          f"{datetime.now(UTC).isoformat(timespec='seconds')}")
    print(report.render())
    for line in report.definitions:
        print(f"* {line}")
    if failed is not None:
        print(f"\nINCOMPLETE: the run stopped on {failed!r}; rows above are what was measured before.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
