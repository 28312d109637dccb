"""Faults on the real broker: kill -9 the sink, restart the broker while publishers publish.

After recovery every event whose delivery was acknowledged to its publisher is in the
store exactly once, and every dispatch the rules require was produced at least once with
an id agencies can deduplicate on. (kill -9 of the router: tests/streams/test_router_kafka.py;
a failing store write: tests/sinks/test_sink_pipeline.py.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from live_hub import LiveHub, check_store_and_dispatches

pytestmark = pytest.mark.kafka


def test_sink_killed_mid_stream_loses_and_doubles_nothing(kafka: Any, tmp_path: Path) -> None:
    hub = LiveHub(kafka, tmp_path, seed=8, n=500)
    try:
        hub.sink.kill()
        assert hub.thread.is_alive(), "the kill must land mid-stream"
        hub.restart_sink()
        hub.thread.join(120)
        assert not hub.failed and len(hub.acknowledged) == len(hub.incidents)
        stats = check_store_and_dispatches(hub.settings, hub.sink_url, hub.incidents, hub.acknowledged)
        assert stats["incidents"] == len(hub.incidents)
    finally:
        hub.stop()


def test_broker_restart_mid_stream_while_publishing(kafka: Any, tmp_path: Path) -> None:
    hub = LiveHub(kafka, tmp_path, seed=9, n=600)
    try:
        kafka.broker.restart()
        assert hub.thread.is_alive(), "the restart must land mid-stream"
        hub.thread.join(180)
        # Publishers retry through the outage (delivery.timeout.ms): nothing is reported lost.
        assert len(hub.acknowledged) + len(hub.failed) == len(hub.incidents)
        stats = check_store_and_dispatches(hub.settings, hub.sink_url, hub.incidents, hub.acknowledged)
        print(f"broker restart: published {len(hub.incidents)}, acknowledged {len(hub.acknowledged)}, "
              f"failed {len(hub.failed)}, stored {stats['incidents']}, router exits {hub.router_exits}")
        # The router may have exited during the outage (stall watchdog: 4; before issue 9, -6:
        # librdkafka's admin client in the watchdog aborted); the supervisor restarted it, and
        # the checks above prove that nothing was lost or doubled whatever happened to it.
        assert len(hub.router_exits) <= 3
    finally:
        hub.stop()
