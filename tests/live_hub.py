"""A running hub for fault tests: router and sink processes fed slowly by a publisher thread,
and the check that every acknowledged incident is stored once and dispatched as the rules say."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub_helpers import HubProcess, get_json, hub_settings, read_topics, wait_for

from veille.producers.sdk import Publisher
from veille.producers.simulator import Simulator, span_for
from veille.schemas.models import Incident
from veille.territory import load_territory
from veille.territory.routing import route_incident
from veille.topics import Topics


def _publish_slowly(settings: Any, incidents: list[Incident], acknowledged: list[str],
                    failed: list[str], pause: float) -> None:
    with Publisher(settings, client_id="test-faults") as pub:
        for i, inc in enumerate(incidents):
            pub.publish(inc)
            if i % 25 == 24:
                pub.poll(0)
                time.sleep(pause)
        summary = pub.flush(60)
        acknowledged.extend(pub.acknowledged_ids)
        failed.extend(event_id for event_id, _ in summary.failed)


def check_store_and_dispatches(settings: Any, sink_url: str, incidents: list[Incident],
                                acknowledged: list[str]) -> dict[str, Any]:
    # Generous: a stall (30 s) and a restart if the router got stuck (static membership: no
    # wait for the dead member's session).
    wait_for(lambda: set(acknowledged) <= set(get_json(f"{sink_url}/stats?ids=1")["ids"]), 240,
             "every acknowledged incident in the store")
    time.sleep(2)
    stats = get_json(f"{sink_url}/stats?ids=1")
    assert set(acknowledged) <= set(stats["ids"])
    assert stats["incidents"] == stats["incident_ids"] == len(stats["ids"])  # nothing doubled
    topics = Topics(settings.topic_prefix)
    territory = load_territory()
    by_id = {str(i.id): i for i in incidents}
    required = {(event_id, t.agency_id, t.service.value)
                for event_id in acknowledged for t in route_incident(by_id[event_id], territory).targets}
    records = read_topics(settings, [topics.dispatch(a) for a in territory.agencies], timeout=60,
                          until=lambda out: required <= {(d.value["event_id"], d.value["agency_id"],
                                                          d.value["service"]) for _, d in out})
    ids: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for _, d in records:
        ids[(d.value["event_id"], d.value["agency_id"], d.value["service"])].add(str(d.value["id"]))
    assert required <= set(ids)  # at least once
    assert all(len(v) == 1 for v in ids.values())  # re-deliveries carry the same dispatch id
    return stats


class LiveHub:
    """Router and sink processes with a publisher thread feeding them incidents slowly."""

    def __init__(self, kafka: Any, tmp_path: Path, seed: int, n: int, grouping: bool = False) -> None:
        self.settings = hub_settings(kafka.settings, tmp_path, sink_batch_seconds=0.3,
                                     router_stall_seconds=30, grouping=grouping)
        sim = Simulator(load_territory(), seed=seed, start=datetime.now(UTC) - span_for(n))
        self.incidents = sim.incidents(n)
        self.router = HubProcess(self.settings, "router", "run", "--metrics-port", "0").start()
        self.stopping = threading.Event()
        self.router_exits: list[int] = []
        self.router.supervise(self.stopping, self.router_exits)
        # Grouping on (docs/grouping.md): the grouping worker beside the router, supervised too.
        self.grouping = HubProcess(self.settings, "router", "grouping", "--metrics-port", "0").start() \
            if grouping else None
        self.grouping_exits: list[int] = []
        if self.grouping is not None:
            self.grouping.supervise(self.stopping, self.grouping_exits)
        self.sink = HubProcess(self.settings, "sink", "run", "--port", "0").start()
        self.sink_url = self.sink.info("sink.json")["url"]
        self.acknowledged: list[str] = []
        self.failed: list[str] = []
        self.thread = threading.Thread(target=_publish_slowly, args=(
            self.settings, self.incidents, self.acknowledged, self.failed, 0.2))
        self.thread.start()
        wait_for(lambda: get_json(f"{self.sink_url}/stats")["incidents"] > 100, 60, "hub mid-stream")

    def restart_sink(self) -> None:
        self.sink = HubProcess(self.settings, "sink", "run", "--port", "0").start()
        self.sink_url = self.sink.info("sink.json")["url"]

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(180)
        self.sink.stop()
        if self.grouping is not None:
            self.grouping.stop()
        self.router.stop()
