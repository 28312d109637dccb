"""End to end: producer → router (``veille router run``) → sink (``veille sink run``) → store.

Router and sink run as subprocesses, as in production, on a topic prefix of their own.
Progress is read from the broker, not from the processes: the sink commits its offsets
on ``<prefix>.routed`` only after a batch is in the store, and the routed topic holds
exactly one record per routed incident (no alerts are published, no transactions), so the
sum of the sink group's committed offsets IS the number of incidents in the store.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.results import say
from veille.config import Settings
from veille.producers.sdk import Publisher
from veille.schemas.models import Incident
from veille.sinks.store import ChdbStore
from veille.topics import Topics

CHUNK = 500  # incidents per publish_many call in the sustained phase


# --------------------------------------------------------------------------- processes


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: a killed benchmark leaves no orphan


class Child:
    """One ``veille ...`` subprocess, stopped by its PID (SIGTERM, SIGKILL after a grace time)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path,
                 module: str = "veille.cli") -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", module, *args], env=env,
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, preexec_fn=_die_with_parent)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_info(self, path: Path, timeout: float = 90) -> dict[str, Any]:
        """The JSON file the process writes once it serves (matched on our PID)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                info: dict[str, Any] = json.loads(path.read_text())
                if info.get("pid") == self.pid:
                    return info
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                say(f"{self.name} (pid {self.pid}) ignored SIGTERM for {timeout:.0f}s: SIGKILL")
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hub_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEILLE_")}
    env.update({
        "VEILLE_TOPIC_PREFIX": settings.topic_prefix,
        "VEILLE_STATE_DIR": str(settings.state_dir),
        "VEILLE_CACHE_DIR": str(settings.cache_dir),
        "VEILLE_BOOTSTRAP_SERVERS": settings.kafka_bootstrap(),
        "VEILLE_SINK_BATCH_ROWS": str(settings.sink_batch_rows),
        "VEILLE_SINK_BATCH_SECONDS": str(settings.sink_batch_seconds),
        "VEILLE_GROUPING": str(settings.grouping).lower(),
        "PYTHONUNBUFFERED": "1",
    })
    return env


# --------------------------------------------------------------------------- progress


class Committed:
    """Sum of a group's committed offsets on ``topics``, read by a consumer that never joins it.

    Not the admin API: librdkafka 2.16's ListConsumerGroupOffsets crashed the benchmark while
    the group was forming (SIGSEGV in rd_kafka_cgrp_op under rd_kafka_handle_OffsetFetch, gdb).
    """

    def __init__(self, settings: Settings, group: str, topics: list[str]) -> None:
        self.consumer = Consumer({**settings.kafka_client_config(), "group.id": group,
                                  "enable.auto.commit": False})
        md = self.consumer.list_topics(timeout=30)
        self.partitions = [TopicPartition(t, p) for t in topics for p in md.topics[t].partitions]
        self.last = 0

    def total(self) -> int:
        """The last known total: while the group coordinator loads or moves, the previous one."""
        with contextlib.suppress(KafkaException):
            self.last = sum(max(tp.offset, 0) for tp in self.consumer.committed(self.partitions, timeout=10))
        return self.last

    def close(self) -> None:
        self.consumer.close()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page: (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lbl), v in samples.items() if n == name and want <= set(lbl))


# --------------------------------------------------------------------------- events


class Feed:
    """Fresh incidents from a pool of simulated ones: new id, reported now, same delay to occurred_at.

    Live traffic is reported "now"; replaying the simulator's past times would also spread
    the store's monthly partitions and make the latency meaningless.
    """

    def __init__(self, pool: Sequence[Incident]) -> None:
        self.pool = pool
        self.delays = [i.reported_at - i.occurred_at for i in pool]
        self.next = 0

    def take(self, n: int) -> list[Incident]:
        now = datetime.now(UTC)
        out = []
        for _ in range(n):
            k = self.next % len(self.pool)
            self.next += 1
            out.append(self.pool[k].model_copy(
                update={"id": uuid.uuid4(), "reported_at": now, "occurred_at": now - self.delays[k]}))
        return out


# --------------------------------------------------------------------------- phases


@dataclass
class Phase:
    name: str
    first_publish: datetime  # wall clock, to select the phase's rows in the store
    last_publish: datetime
    published: int  # acknowledged by Kafka
    publish_seconds: float
    caught_up_seconds: float | None  # first publish → store has all (None: timed out)
    stored_at_catch_up: int
    timeline: list[tuple[float, int, int]] = field(default_factory=list)  # (t, acked, stored)
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds in the phase

    @property
    def rate(self) -> float | None:
        if self.caught_up_seconds is None:
            return None
        return self.stored_at_catch_up / self.caught_up_seconds


class Hub:
    """The running router and sink, and the benchmark's view of their progress."""

    def __init__(self, settings: Settings, sink: Child, router: Child, broker_pid: int) -> None:
        self.settings = settings
        self.sink = sink
        self.router = router
        self.pids = {"router": router.pid, "sink": sink.pid, "broker": broker_pid, "producer": os.getpid()}
        self.sink_group = f"{settings.topic_prefix}.sink"
        self.committed = Committed(settings, self.sink_group, [Topics(settings.topic_prefix).routed])
        self.base = 0  # incidents stored before the current phase

    def stored(self) -> int:
        return self.committed.total()

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def wait_stored(self, expected: int, timeout: float, start: float) -> tuple[float | None, int,
                                                                                list[tuple[float, int, int]]]:
        """Poll until ``expected`` incidents are stored; (seconds since ``start`` or None, stored)."""
        deadline = time.monotonic() + timeout
        timeline: list[tuple[float, int, int]] = []
        last_change, last = time.monotonic(), -1
        while True:
            stored = self.stored()
            now = time.perf_counter()
            timeline.append((now - start, expected, stored))
            if stored >= expected:
                return now - start, stored, timeline
            if stored != last:
                last_change, last = time.monotonic(), stored
            for child in (self.router, self.sink):
                if child.proc.poll() is not None:
                    raise RuntimeError(f"{child.name} died (exit {child.proc.returncode}):\n{child.tail()}")
            if time.monotonic() > deadline:
                stalled = time.monotonic() - last_change
                say(f"NOT caught up after {timeout:.0f}s: {stored - self.base} of {expected - self.base} "
                    f"stored, no progress for {stalled:.0f}s")
                return None, stored, timeline
            time.sleep(0.2)


def warm_up(hub: Hub, publisher: Publisher, feed: Feed, n: int, timeout: float = 120) -> float:
    """Publish ``n`` incidents and wait for them in the store: group joins, first inserts, JIT-free."""
    start = time.perf_counter()
    publisher.publish_many(feed.take(n), record_type="Incident")
    summary = publisher.flush(60)
    took, stored, _ = hub.wait_stored(summary.acknowledged, timeout, start)
    if took is None:
        raise RuntimeError(f"warm-up: {stored} of {summary.acknowledged} stored after {timeout:.0f}s\n"
                           f"router log:\n{hub.router.tail()}\nsink log:\n{hub.sink.tail()}")
    hub.base = stored
    return took


def sustained(hub: Hub, publisher: Publisher, feed: Feed, seconds: float, drain_timeout: float) -> Phase:
    """Publish as fast as router + sink absorb for ``seconds``, then wait until all is stored.

    The only brake on the producer is the backlog (acknowledged - stored): it pauses above
    ~3 s of the rate achieved so far (2k..60k; 10k for the first 3 s), enough for the pipeline never to starve
    while the end-of-phase drain stays a few seconds.
    """
    base = hub.base
    acked0 = publisher.summary().acknowledged
    cpu0 = hub.cpu()
    timeline: list[tuple[float, int, int]] = []
    start = time.perf_counter()
    first = datetime.now(UTC)
    sent, stored, next_probe, limit = 0, base, 0.0, 10_000
    while (now := time.perf_counter() - start) < seconds:
        if now >= next_probe:
            stored = hub.stored()
            acked = publisher.summary().acknowledged - acked0
            timeline.append((now, acked, stored - base))
            if now > 3:
                limit = int(min(60_000, max(2_000, 3 * (stored - base) / now)))
            next_probe = now + 0.5
        if sent - (stored - base) > limit:
            publisher.poll(0.05)
            continue
        sent += publisher.publish_many(feed.take(CHUNK), record_type="Incident").queued
    last = datetime.now(UTC)
    publish_seconds = time.perf_counter() - start
    summary = publisher.flush(60)
    published = summary.acknowledged - acked0
    took, stored, tail = hub.wait_stored(base + published, drain_timeout, start)
    cpu1 = hub.cpu()
    timeline += [(t, published, s - base) for t, _, s in tail]
    hub.base = stored
    return Phase("sustained", first, last, published, publish_seconds, took, stored - base, timeline,
                 {k: cpu1[k] - cpu0[k] for k in cpu0})


def fixed_rate(hub: Hub, publisher: Publisher, feed: Feed, rate: float, seconds: float,
               drain_timeout: float) -> Phase:
    """Publish ``rate`` incidents/s for ``seconds``, each reported at the moment it is published."""
    base = hub.base
    acked0 = publisher.summary().acknowledged
    cpu0 = hub.cpu()
    sent = 0
    start = time.perf_counter()
    first = datetime.now(UTC)
    while (now := time.perf_counter() - start) < seconds:
        due = int(now * rate) + 1
        while sent < due:
            publisher.publish(feed.take(1)[0], record_type="Incident")
            sent += 1
        publisher.poll(0)
        time.sleep(0.001)
    last = datetime.now(UTC)
    publish_seconds = time.perf_counter() - start
    summary = publisher.flush(60)
    published = summary.acknowledged - acked0
    took, stored, timeline = hub.wait_stored(base + published, drain_timeout, start)
    cpu1 = hub.cpu()
    hub.base = stored
    return Phase("latency", first, last, published, publish_seconds, took, stored - base, timeline,
                 {k: cpu1[k] - cpu0[k] for k in cpu0})


# --------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class StoreView:
    """What the store holds of one phase (rows whose reported_at lies in its publishing window)."""

    rows: int
    distinct: int
    latency_ms: dict[str, float]  # p50/p99/p999/max of stored_at - reported_at
    routed_ms: dict[str, float]  # p50/p99 of routed_at - reported_at (router's share)


def read_phase(store: ChdbStore, phase: Phase) -> StoreView:
    params = {"a": phase.first_publish - timedelta(milliseconds=1),
              "b": phase.last_publish + timedelta(milliseconds=1)}
    row = store.query(
        "SELECT count() AS rows, uniqExact(id) AS distinct_ids, "
        "quantilesExact(0.5, 0.99, 0.999)(toUnixTimestamp64Milli(stored_at) "
        "  - toUnixTimestamp64Milli(reported_at)) AS q, "
        "max(toUnixTimestamp64Milli(stored_at) - toUnixTimestamp64Milli(reported_at)) AS worst, "
        "quantilesExact(0.5, 0.99)(toUnixTimestamp64Milli(routed_at) "
        "  - toUnixTimestamp64Milli(reported_at)) AS r "
        f"FROM {store.database}.incidents "
        "WHERE reported_at BETWEEN {a:DateTime64(3, 'UTC')} AND {b:DateTime64(3, 'UTC')}", params)[0]
    q, r = row["q"] or [float("nan")] * 3, row["r"] or [float("nan")] * 2
    return StoreView(int(row["rows"]), int(row["distinct_ids"]),
                     {"p50": float(q[0]), "p99": float(q[1]), "p999": float(q[2]),
                      "max": float(row["worst"] or 0)},
                     {"p50": float(r[0]), "p99": float(r[1])})


@contextlib.contextmanager
def opened_store(path: Path, database: str) -> Iterator[ChdbStore]:
    """The embedded store, once the sink that owned it has exited (one process at a time).

    Only SELECTs are run on it: the benchmark reads, it never migrates nor writes.
    """
    store = ChdbStore(path, database)
    try:
        yield store
    finally:
        store.close()
