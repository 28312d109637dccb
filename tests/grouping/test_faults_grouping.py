"""The live hub with grouping on (docs/grouping.md): the grouping worker killed with -9 mid-stream
(its supervisor restarts it), the sink and the dispatches checked as without grouping: every
acknowledged report stored once, every dispatch the rules require produced (a case's update is
the dispatch of that report to that body, with the router's id)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from live_hub import LiveHub, check_store_and_dispatches

pytestmark = pytest.mark.kafka


def test_grouping_worker_killed_mid_stream_loses_and_doubles_nothing(kafka: Any, tmp_path: Path) -> None:
    hub = LiveHub(kafka, tmp_path, seed=8, n=500, grouping=True)
    try:
        assert hub.grouping is not None
        hub.grouping.kill()
        assert hub.thread.is_alive(), "the kill must land mid-stream"
        hub.thread.join(120)
        assert not hub.failed and len(hub.acknowledged) == len(hub.incidents)
        stats = check_store_and_dispatches(hub.settings, hub.sink_url, hub.incidents, hub.acknowledged)
        assert stats["incidents"] == len(hub.incidents)
        assert hub.grouping_exits, "the supervisor restarted the killed worker"
    finally:
        hub.stop()
