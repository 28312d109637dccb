"""The faust router on the real broker: routing, dead letters, kill -9 and restart."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from hub_helpers import HubProcess, expected_dispatches, hub_settings, read_topics, wait_for

from veille.producers.sdk import Publisher
from veille.producers.simulator import Simulator, span_for
from veille.schemas.models import Alert, Incident, StatusUpdate
from veille.territory import load_territory
from veille.topics import Topics

pytestmark = pytest.mark.kafka


def _stream(n: int, seed: int) -> list[Any]:
    territory = load_territory()
    sim = Simulator(territory, seed=seed, start=datetime.now(UTC) - span_for(n + 50))
    return list(sim.events(n)) + sim.flash_flood(incidents=20)


def test_router_routes_every_event_and_dead_letters_poison(kafka: Any, tmp_path: Path) -> None:
    settings = hub_settings(kafka.settings, tmp_path)
    topics = Topics(settings.topic_prefix)
    territory = load_territory()
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    try:
        router.info("router.json")
        events = _stream(150, seed=11)
        with Publisher(settings, client_id="test-router") as pub:
            for e in events:
                pub.publish(e)
            assert not pub.flush(30).failed
        incident = next(e for e in events if isinstance(e, Incident))
        alert = next(e for e in events if isinstance(e, Alert))
        spoofed_topic = topics.intake("35403" if incident.municipality != "35403" else "35404")
        poison = [(topics.intake("35401"), b"\x00garbage"), (topics.intake("35401"), b""),
                  (topics.intake("35402"), alert.encode()), (spoofed_topic, incident.encode()),
                  (topics.status, b"\xc3\x01" + b"\x00" * 8)]
        raw = Producer(settings.kafka_client_config())
        for topic, value in poison:
            raw.produce(topic, value=value)
        raw.flush(10)

        expected_routed = len(events)  # incidents, alerts, and status updates forwarded
        dispatch_topics = [topics.dispatch(a) for a in territory.agencies]
        # Wait for the dispatches too: a reader may fetch the routed topic before the dispatch
        # partitions written in the same batch (a short read, not a loss, seen once).
        expected_dispatch_count = sum(expected_dispatches(events).values())
        records = read_topics(
            settings, [topics.routed, topics.dead_letter, topics.dead_letter_restricted, *dispatch_topics],
            until=lambda out: sum(t == topics.routed for t, _ in out) >= expected_routed
            and sum(t.startswith(f"{topics.prefix}.deadletter") for t, _ in out) >= len(poison)
            and sum(t in dispatch_topics for t, _ in out) >= expected_dispatch_count,
        )
        routed = [d for t, d in records if t == topics.routed]
        assert len(routed) == expected_routed, router.log()
        assert Counter(d.record_type for d in routed) == Counter(
            {"RoutedIncident": sum(isinstance(e, Incident) for e in events), "RoutedAlert": 1,
             "StatusUpdate": sum(isinstance(e, StatusUpdate) for e in events)})

        # Every dispatch the pure function asks for is on the right agency's topic, once.
        expected = expected_dispatches(events)
        got = Counter((d.value["event_id"], t.rsplit(".", 1)[-1], d.value["service"])
                      for t, d in records if t in dispatch_topics)
        assert got == expected

        dead = {(t, d.value["reason"]) for t, d in records if "deadletter" in t}
        assert (topics.dead_letter_restricted, "unsupported_framing") in dead
        assert (topics.dead_letter_restricted, "empty_message") in dead
        assert (topics.dead_letter_restricted, "wrong_record_type") in dead
        assert (topics.dead_letter_restricted, "municipality_mismatch") in dead
        assert (topics.dead_letter, "unknown_schema") in dead
    finally:
        router.stop()


def test_router_killed_mid_stream_loses_nothing(kafka: Any, tmp_path: Path) -> None:
    settings = hub_settings(kafka.settings, tmp_path)
    topics = Topics(settings.topic_prefix)
    territory = load_territory()
    sim = Simulator(territory, seed=5, start=datetime.now(UTC) - timedelta(days=1))
    incidents = sim.incidents(600)
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    router.info("router.json")
    acknowledged: list[str] = []

    def publish() -> None:
        with Publisher(settings, client_id="test-kill") as pub:
            for i, inc in enumerate(incidents):
                pub.publish(inc)
                if i % 20 == 0:
                    pub.flush(10)
                    time.sleep(0.02)
            pub.flush(30)
            acknowledged.extend(pub.acknowledged_ids)

    publisher = threading.Thread(target=publish)
    publisher.start()
    # Kill once the router is demonstrably mid-stream.
    read_topics(settings, [topics.routed], until=lambda out: len(out) >= 100, timeout=60)
    router.kill()
    publisher.join(60)
    restarted = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    try:
        records = read_topics(settings, [topics.routed], timeout=90,
                              until=lambda out: len({d.value["id"] for _, d in out}) >= len(incidents))
        ids = Counter(str(d.value["id"]) for _, d in records)
        assert set(acknowledged) == {str(i.id) for i in incidents}
        assert set(ids) == set(acknowledged), restarted.log()  # nothing lost
        # At-least-once: a batch in flight at the kill may be routed twice, never more.
        assert max(ids.values()) <= 2
    finally:
        restarted.stop()


def test_router_killed_repeatedly_under_supervisor_never_livelocks(kafka: Any, tmp_path: Path) -> None:
    """kill -9 (no LeaveGroup) again and again: each successor takes its predecessor's place at
    once (static membership), the watchdog never fires (no exit 4), and nothing is lost."""
    settings = hub_settings(kafka.settings, tmp_path, router_stall_seconds=30)
    topics = Topics(settings.topic_prefix)
    sim = Simulator(load_territory(), seed=21, start=datetime.now(UTC) - timedelta(days=1))
    incidents = sim.incidents(1200)
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    router.info("router.json")
    stopping = threading.Event()
    exits: list[int] = []
    router.supervise(stopping, exits)
    acknowledged: list[str] = []

    def publish() -> None:
        with Publisher(settings, client_id="test-kill-loop") as pub:
            for i, inc in enumerate(incidents):
                pub.publish(inc)
                if i % 20 == 19:
                    pub.poll(0)
                    time.sleep(0.55)  # ~35 incidents/s: the stream spans the kills
            assert not pub.flush(60).failed
            acknowledged.extend(pub.acknowledged_ids)

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        read_topics(settings, [topics.routed], until=lambda out: len(out) >= 50, timeout=60)
        for _ in range(5):
            # The successor is up (the supervisor restarted it) and serving.
            wait_for(lambda: router.proc is not None and router.proc.poll() is None, 10, "a restart")
            router.info("router.json")
            time.sleep(3)
            router.kill()
        last_kill = time.monotonic()
        publisher.join(120)
        assert len(acknowledged) == len(incidents)
        records = read_topics(settings, [topics.routed], timeout=120,
                              until=lambda out: {str(d.value["id"]) for _, d in out} >= set(acknowledged))
        caught_up = time.monotonic() - last_kill
        routed = Counter(str(d.value["id"]) for _, d in records)
        assert set(routed) == set(acknowledged), router.log()  # every published incident routed
        print(f"5 kills: exits {exits}, every incident routed {caught_up:.1f}s after the last kill")
        assert exits and all(code == -9 for code in exits), (exits, router.log())  # never 4
    finally:
        stopping.set()
        time.sleep(0.6)
        router.stop()
