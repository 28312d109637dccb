"""A router asked to stop exits within 10 s whatever the broker's state (issue 26's first fault)."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hub_helpers import HubProcess, hub_settings, read_topics

from veille.producers.sdk import Publisher
from veille.producers.simulator import Simulator, span_for
from veille.schemas.models import Incident
from veille.territory import load_territory
from veille.topics import Topics

pytestmark = pytest.mark.kafka


def test_sigterm_with_the_broker_unreachable_exits_within_10_s(kafka: Any, tmp_path: Path) -> None:
    settings = hub_settings(kafka.settings, tmp_path)
    topics = Topics(settings.topic_prefix)
    sim = Simulator(load_territory(), seed=3, start=datetime.now(UTC) - span_for(20))
    incidents = [e for e in sim.events(20) if isinstance(e, Incident)]
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()
    try:
        router.info("router.json")
        with Publisher(settings, client_id="test-stop") as pub:
            for e in incidents:
                pub.publish(e)
            assert not pub.flush(30).failed
        # The router runs for real before the broker goes: it has routed what was published.
        read_topics(settings, [topics.routed], until=lambda out: len(out) >= len(incidents))
        kafka.broker.stop()
        try:
            time.sleep(5)  # its clients notice the broker is gone and start retrying
            assert router.proc is not None and router.proc.poll() is None
            started = time.monotonic()
            router.proc.send_signal(signal.SIGTERM)
            code = router.proc.wait(timeout=60)
            took = time.monotonic() - started
        finally:
            kafka.broker.restart()
        print(f"router stopped in {took:.1f} s with the broker down (exit {code})")
        assert took < 10, router.log()
        assert code == 0, router.log()
    finally:
        router.stop()
