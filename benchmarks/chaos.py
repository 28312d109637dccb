"""``make chaos``: single faults under load, each repeated, with recovery times and data checks.

Starts its own broker (single node, SASL/SCRAM like the demo), a router and a sink under a
restart-on-exit supervisor (what compose's ``restart: unless-stopped`` does), and a publisher
feeding incidents through the SDK at a steady rate. Then, round after round, each fault:

* kill -9 the router;  * kill -9 the sink;  * graceful broker restart;
* kill -9 the broker, then start it;  * kill -9 the router and the sink together.

Recovery of one fault = time from the END of the fault (the process is dead; the broker
answers again) to the moment committed offsets cover everything published before it: the
router group's committed offsets pass every intake offset acknowledged for events published
before the end of the fault, and the sink group's committed offsets pass the end of the
routed topic as it was at that moment (conservative: the routed topic also holds later
events). The supervisor polls every 0.5 s, which is part of the measured time.

At the end: every acknowledged incident stored exactly once, every required dispatch
present with exactly one dispatch id, and the exit codes the supervisor saw (code 4, the
router's stall watchdog, must not appear). Not a timed test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from benchmarks.pipeline import Child, hub_env
from benchmarks.results import say
from veille.config import Settings
from veille.local.broker import LocalBroker
from veille.local.processes import port_is_free
from veille.producers.sdk import DeliveryReport, Publisher
from veille.producers.simulator import Simulator, span_for
from veille.reads.service import SINK_INFO
from veille.schemas import codec
from veille.schemas.models import Incident
from veille.territory import Territory, load_territory
from veille.territory.routing import route_incident
from veille.territory.topics import territory_topic_specs
from veille.topics import Topics, ensure_topics

TARGET_SECONDS = 15.0
RECOVERY_TIMEOUT = 120.0


class Supervised:
    """A ``veille ...`` command restarted whenever it exits (exit codes recorded)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.args, self.env, self.log_dir = name, args, env, log_dir
        self.exits: list[int] = []
        self.starts = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.child = self._start()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _start(self) -> Child:
        self.starts += 1
        return Child(f"{self.name}-{self.starts}", self.args, self.env, self.log_dir)

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                code = self.child.proc.poll()
                if code is not None:
                    self.exits.append(code)
                    self.child = self._start()

    def kill9(self) -> None:
        with self._lock:
            self.child.proc.kill()
            self.child.proc.wait()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.child.stop()


class Feed:
    """Publishes incidents through the SDK at ``rate``/s from a thread; keeps every report."""

    def __init__(self, settings: Settings, incidents: list[Incident], rate: float) -> None:
        self.incidents, self.rate = incidents, rate
        self.published = 0  # events handed to publish(), in order
        self.reports: dict[int, DeliveryReport] = {}
        # Connection errors during broker faults are expected: keep librdkafka's log quiet.
        self.pub = Publisher(settings, client_id="chaos", extra_config={"log_level": 0})
        self.pub.start_polling(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _on_result(self, seq: int) -> Callable[[DeliveryReport], None]:
        def record(report: DeliveryReport) -> None:
            self.reports[seq] = report
        return record

    def _run(self) -> None:
        began = time.monotonic()
        for seq, incident in enumerate(self.incidents):
            if self._stop.is_set():
                break
            delay = began + seq / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.pub.publish(incident, on_result=self._on_result(seq))
            self.published = seq + 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.pub.flush(60)

    def acknowledged(self) -> list[Incident]:
        return [self.incidents[s] for s, r in sorted(self.reports.items()) if r.ok]


def _committed(admin: AdminClient, group: str) -> dict[tuple[str, int], int]:
    fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=5)[group]
    return {(tp.topic, tp.partition): tp.offset for tp in fut.result().topic_partitions}


def _ends(admin: AdminClient, topic: str, partitions: int) -> dict[tuple[str, int], int]:
    res = admin.list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)},
                             request_timeout=5)
    return {(tp.topic, tp.partition): f.result().offset for tp, f in res.items()}


def _covers(committed: dict[tuple[str, int], int], needs: dict[tuple[str, int], int]) -> bool:
    """Committed offsets are the NEXT offset to read: they cover ``needs`` (next offsets too)."""
    return all(committed.get(tp, -1) >= off for tp, off in needs.items() if off > 0)


def wait_recovered(feed: Feed, before: int, settings: Settings, fault_end: float) -> float | None:
    """Seconds from ``fault_end`` until the committed offsets cover the first ``before`` events."""
    # A fresh admin client per fault: after a broker restart an old one can keep timing out.
    admin = AdminClient(settings.kafka_client_config())
    topics = Topics(settings.topic_prefix)
    router_group, sink_group = f"{settings.topic_prefix}-router", f"{settings.topic_prefix}.sink"
    routed_needs: dict[tuple[str, int], int] | None = None
    while time.monotonic() - fault_end < RECOVERY_TIMEOUT:
        time.sleep(0.25)
        try:
            if routed_needs is None:
                reports = [feed.reports.get(s) for s in range(before)]
                if any(r is None for r in reports):
                    continue  # deliveries still pending (broker faults): not yet recovered
                needs: dict[tuple[str, int], int] = {}
                for r in reports:
                    if r is not None and r.ok and r.partition is not None and r.offset is not None:
                        key = (r.topic, r.partition)
                        needs[key] = max(needs.get(key, 0), r.offset + 1)
                if not _covers(_committed(admin, router_group), needs):
                    continue
                routed_needs = _ends(admin, topics.routed, settings.partitions)
            if _covers(_committed(admin, sink_group), routed_needs):
                return time.monotonic() - fault_end
        except Exception as exc:  # the broker may be starting: keep polling
            say(f"  (probe: {exc!r})")
            admin = AdminClient(settings.kafka_client_config())
    return None


def _check_data(settings: Settings, territory: Territory, acknowledged: list[Incident],
                sink_url: str) -> list[tuple[str, bool, str]]:
    with urllib.request.urlopen(f"{sink_url}/stats?ids=1", timeout=60) as resp:
        stats = json.load(resp)
    stored = set(stats["ids"])
    ack_ids = {str(i.id) for i in acknowledged}
    missing = len(ack_ids - stored)
    once = stats["incidents"] == stats["incident_ids"] == len(stored)
    checks = [(f"acknowledged incidents stored: {len(ack_ids) - missing}/{len(ack_ids)}", missing == 0, ""),
              (f"stored exactly once: {stats['incidents']} rows, {len(stored)} ids", once, "")]
    topics = Topics(settings.topic_prefix)
    required = {(str(i.id), t.agency_id, t.service.value)
                for i in acknowledged for t in route_incident(i, territory).targets}
    ids: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"chaos-check-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topics.dispatch(a) for a in territory.agencies])
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and not required <= set(ids):
            for msg in consumer.consume(2000, timeout=0.5):
                if msg.error() is None:
                    d = codec.decode(msg.value()).value
                    ids[(d["event_id"], d["agency_id"], d["service"])].add(str(d["id"]))
    finally:
        consumer.close()
    present = len(required & set(ids))
    checks.append((f"required dispatches present: {present}/{len(required)}", present == len(required), ""))
    doubled = sum(len(v) > 1 for v in ids.values())
    checks.append((f"dispatches with more than one id: {doubled}", doubled == 0, ""))
    return checks


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through every finally: children, broker


FAULTS = ["kill -9 router", "kill -9 sink", "graceful broker restart", "kill -9 broker, start",
          "kill -9 router + sink"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="times each fault is run (default 5)")
    parser.add_argument("--rate", type=float, default=100.0, help="incidents/s published (default 100)")
    parser.add_argument("--stall-seconds", type=float, default=30.0,
                        help="VEILLE_ROUTER_STALL_SECONDS of the router (default 30, the tests' value)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds between faults (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the state dir (logs)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)

    state_dir = Path(tempfile.mkdtemp(prefix="veille-chaos-"))
    settings = Settings().model_copy(update={"state_dir": state_dir, "bootstrap_servers": "",
                                             "clickhouse_url": "", "topic_prefix": "chaos"})
    broker = LocalBroker(settings)
    territory = load_territory(settings.territory_dir)
    n = int(args.rate * (len(FAULTS) * args.rounds * 30 + 60))  # ~2x what a run takes
    sim = Simulator(territory, seed=99, start=datetime.now(UTC) - span_for(n))
    incidents = sim.incidents(n)
    began = time.monotonic()
    results: dict[str, list[float | None]] = {f: [] for f in FAULTS}
    router = sink = feed = None
    failed: BaseException | None = None
    checks: list[tuple[str, bool, str]] = []
    try:
        info = broker.start(die_with_parent=True)
        port = int(info.bootstrap.rsplit(":", 1)[1])
        say(f"broker pid {info.pid} on {info.bootstrap}; state in {state_dir}")
        settings = settings.model_copy(update={"bootstrap_servers": info.bootstrap})
        admin = AdminClient(settings.kafka_client_config())
        ensure_topics(admin, territory_topic_specs(settings))
        env = {**hub_env(settings), "VEILLE_ROUTER_STALL_SECONDS": str(args.stall_seconds)}
        router = Supervised("router", ["router", "run", "--metrics-port", "0"], env, state_dir)
        sink = Supervised("sink", ["sink", "run", "--port", "0"], env, state_dir)
        router.child.wait_info(state_dir / "router.json")
        sink.child.wait_info(state_dir / SINK_INFO)
        feed = Feed(settings, incidents, args.rate)
        time.sleep(5)
        first = wait_recovered(feed, feed.published, settings, time.monotonic())
        say(f"hub up, publishing {args.rate:.0f} incidents/s (caught up in {first}s)")
        r, s = router, sink

        def broker_start() -> None:
            deadline = time.monotonic() + 10
            while not port_is_free(port) and time.monotonic() < deadline:
                time.sleep(0.1)
            broker.start(port=port, die_with_parent=True)

        def broker_restart() -> None:
            broker.stop(timeout=30)
            broker_start()

        def broker_kill_start() -> None:
            broker.kill()
            broker_start()

        def both() -> None:
            r.kill9()
            s.kill9()

        actions: dict[str, Callable[[], Any]] = {
            "kill -9 router": r.kill9, "kill -9 sink": s.kill9,
            "graceful broker restart": broker_restart,
            "kill -9 broker, start": broker_kill_start,
            "kill -9 router + sink": both,
        }
        for round_no in range(1, args.rounds + 1):
            for fault in FAULTS:
                actions[fault]()
                end = time.monotonic()
                before = feed.published
                took = wait_recovered(feed, before, settings, end)
                results[fault].append(took)
                say(f"round {round_no} {fault}: recovered in "
                    + (f"{took:.1f}s" if took is not None else f"> {RECOVERY_TIMEOUT:.0f}s"))
                time.sleep(args.settle)
        feed.stop()
        final = wait_recovered(feed, feed.published, settings, time.monotonic())
        say(f"publishing stopped; final catch-up {final}s")
        sink_url = json.loads((state_dir / SINK_INFO).read_text())["url"]
        checks = _check_data(settings, territory, feed.acknowledged(), sink_url)
    except (Exception, KeyboardInterrupt) as exc:
        failed = exc
        say(f"FAILED: {exc!r}")
    finally:
        if feed is not None:
            feed.pub.close(10)
        for proc in (router, sink):
            if proc is not None:
                proc.stop()
        broker.stop(timeout=30)

    print(f"\nchaos run: {args.rounds} rounds, {args.rate:.0f} incidents/s, router stall window "
          f"{args.stall_seconds:.0f}s, {time.monotonic() - began:.0f}s in all, "
          f"{datetime.now(UTC).isoformat(timespec='seconds')}\n")
    print(f"| Fault | Runs | Recovery min | median | max | ≤ {TARGET_SECONDS:.0f} s |")
    print("|---|---|---|---|---|---|")
    ok = failed is None
    for fault, times in results.items():
        done = [t for t in times if t is not None]
        if not times:
            continue
        worst = max(done) if len(done) == len(times) else None
        met = worst is not None and worst <= TARGET_SECONDS
        ok = ok and met
        cells = (f"{min(done):.1f} s | {statistics.median(done):.1f} s | "
                 + (f"{worst:.1f} s" if worst is not None else f"> {RECOVERY_TIMEOUT:.0f} s")) if done \
            else "— | — | never"
        print(f"| {fault} | {len(times)} | {cells} | {'✔' if met else '✘'} |")
    print()
    if feed is not None:
        failed_deliveries = sum(not r.ok for r in feed.reports.values())
        print(f"published {feed.published}, acknowledged {len(feed.acknowledged())}, "
              f"delivery failures reported to the publisher {failed_deliveries}")
    for text, good, _ in checks:
        ok = ok and good
        print(f"{'✔' if good else '✘'} {text}")
    if router is not None and sink is not None:
        stalls = router.exits.count(4)
        ok = ok and stalls == 0
        print(f"{'✔' if stalls == 0 else '✘'} router exits seen by the supervisor: "
              f"{dict(Counter(router.exits))} (4 = stall watchdog: {stalls})")
        print(f"  sink exits seen by the supervisor: {dict(Counter(sink.exits))}")
    if args.keep or not ok:
        say(f"kept {state_dir} (logs)")
    else:
        shutil.rmtree(state_dir, ignore_errors=True)
    if failed is not None:
        print(f"\nINCOMPLETE: the run stopped on {failed!r}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
