"""The whole hub on the real broker and a real chDB store: router + sink as processes.

N events in → exactly N incidents in the store and the dispatches the routing rules ask
for, even when the router and the sink are stopped and restarted in the middle.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hub_helpers import HubProcess, expected_dispatches, get_json, hub_settings, wait_for

from veille.producers.sdk import Publisher
from veille.producers.simulator import Simulator, span_for
from veille.schemas.models import Incident, StatusUpdate
from veille.territory import load_territory

pytestmark = pytest.mark.kafka


def test_every_event_stored_once_across_router_and_sink_restarts(kafka: Any, tmp_path: Path) -> None:
    settings = hub_settings(kafka.settings, tmp_path, sink_batch_seconds=0.3, router_stall_seconds=30)
    territory = load_territory()
    sim = Simulator(territory, seed=42, start=datetime.now(UTC) - span_for(900))
    events = list(sim.events(400)) + sim.flash_flood(incidents=30) + list(sim.events(400))
    n_incidents = sum(isinstance(e, Incident) for e in events)

    sink = HubProcess(settings, "sink", "run", "--port", "0").start()
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    sink_url = sink.info("sink.json")["url"]
    router.info("router.json")
    published = threading.Event()
    supervising = threading.Event()
    router_exits: list[int] = []
    acknowledged: list[str] = []

    def publish() -> None:
        with Publisher(settings, client_id="test-pipeline") as pub:
            for i, e in enumerate(events):
                pub.publish(e)
                if i % 50 == 49:
                    pub.flush(10)
                    time.sleep(0.5)  # a live stream, not one burst: restarts land mid-stream
            summary = pub.flush(30)
            assert not summary.failed
            acknowledged.extend(pub.acknowledged_ids)
        published.set()

    thread = threading.Thread(target=publish)
    thread.start()
    try:
        wait_for(lambda: get_json(f"{sink_url}/stats")["incidents"] > 50, 60, "first incidents stored")
        router.stop()  # graceful stop mid-stream, then a new router takes over
        router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
        # As in production, a supervisor restarts the router if its stall watchdog fires
        # (seen rarely: the faust consumer stops fetching after a rebalance).
        router.supervise(supervising, router_exits)
        sink.stop()  # graceful: flushes its batch and commits
        sink = HubProcess(settings, "sink", "run", "--port", "0").start()
        sink_url = sink.info("sink.json")["url"]
        still_publishing = thread.is_alive()
        thread.join(120)
        assert published.is_set() and still_publishing, "restarts must land mid-stream"
        wait_for(lambda: get_json(f"{sink_url}/stats")["incident_ids"] >= n_incidents, 240,
                 f"{n_incidents} incidents in the store")
        time.sleep(2)  # anything still in flight would now show up as an excess
        stats = get_json(f"{sink_url}/stats")
        since = (datetime.now(UTC) - timedelta(days=30)).date()
        indicators = get_json(f"{sink_url}/indicators?municipalities={','.join(territory.municipalities)}"
                              f"&from={since}&to=2100-01-01")
    finally:
        supervising.set()
        router.stop()
        sink.stop()

    assert len(acknowledged) == len(events)
    assert set(router_exits) <= {4}, router_exits  # only the stall watchdog may stop it
    assert stats["incidents"] == stats["incident_ids"] == n_incidents
    assert stats["alerts"] == 1
    assert stats["status_events"] == sum(isinstance(e, StatusUpdate) for e in events)
    got = Counter({(r["agency_id"], r["service"]): r["dispatches"] for r in stats["dispatches_by_agency"]})
    per_agency: Counter[tuple[str, str]] = Counter()
    for (_, agency, service), n in expected_dispatches(events).items():
        per_agency[(agency, service)] += n
    assert got == per_agency
    # The flood crossed boundaries: pooled bodies acted outside their home municipality.
    cross = {r["agency_id"]: r["cross_boundary"] for r in indicators["cross_boundary"]["by_agency"]}
    assert cross["syndicat-eaux-veille"] > 0 and cross["sdis35"] == 0
