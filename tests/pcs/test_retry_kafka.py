"""A representative's mail server answers 451 twice: the PCS worker sends the same notification
again from its timer (backoff), and the third try is delivered: one e-mail, one Message-ID,
three ``notified`` events of the same id (retry, retry, delivered)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller
from confluent_kafka import Producer
from hub_helpers import HubProcess, hub_settings
from pcs_helpers import cascade_events, free_port, short_plan, smtp_env

from veille.local.receivers import Mailbox
from veille.pcs import events
from veille.pcs.cascade import activation_id
from veille.pcs.plan import PCS_FILE
from veille.topics import Topics

pytestmark = pytest.mark.kafka
BOURG = "bourg@saint-meen.example"


@dataclass
class Flaky(Mailbox):
    """Refuses an address with a transient 451 as many times as told, then accepts it."""

    flaky: dict[str, int] = field(default_factory=dict)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if self.flaky.get(address, 0) > 0:
            self.flaky[address] -= 1
            return "451 4.3.0 Try again later"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


@pytest.fixture
def flaky() -> Iterator[tuple[Flaky, int]]:
    box, port = Flaky(flaky={BOURG: 2}), free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        yield box, port
    finally:
        smtp.stop()


def test_a_transient_failure_is_retried_until_delivered(kafka: Any, tmp_path: Path,
                                                        flaky: tuple[Flaky, int]) -> None:
    box, port = flaky
    territory = short_plan(tmp_path)
    plan = yaml.safe_load((territory / PCS_FILE).read_text())
    for town in plan["municipalities"].values():
        town["ack_minutes"] = 30  # nobody escalates during the test: only retries happen
    (territory / PCS_FILE).write_text(yaml.safe_dump(plan, allow_unicode=True))
    settings = hub_settings(kafka.settings, tmp_path / "state", territory_dir=territory)
    env = {**smtp_env(port), "VEILLE_PCS_NOTIFY_RETRIES": "3", "VEILLE_PCS_RETRY_BASE_SECONDS": "0.3"}
    worker = HubProcess(settings, "pcs", "worker", "--metrics-port", "0", "--tick-seconds", "0.2",
                        "--log-level", "info", env=env).start()
    act = activation_id("35402", f"test/{uuid.uuid4()}")
    try:
        producer = Producer(settings.kafka_client_config())
        producer.produce(Topics(settings.topic_prefix).pcs_cascade, key=act.encode(), value=events.encode(
            events.ActivationEvent(activation=act, at=int(time.time() * 1000), municipality="35402",
                                   source="manual", source_id="test", severity="manual", headline="Canicule",
                                   representatives=("r-35402-bourg",))))
        assert producer.flush(30) == 0

        def sent(evs: list[Any]) -> list[events.NotifiedEvent]:
            return [e for e in evs if isinstance(e, events.NotifiedEvent)]

        evs = cascade_events(settings, lambda out: any(n.outcome == "delivered" for n in sent(out)),
                             timeout=90)
    finally:
        worker.stop()
    notified = sent(evs)
    assert [n.outcome for n in notified] == ["retry", "retry", "delivered"], worker.log()
    assert len({n.notification for n in notified}) == 1 and notified[0].target == "r-35402-bourg"
    retries = [e for e in evs if isinstance(e, events.RetryEvent)]
    assert [r.attempt for r in retries] == [1, 2]
    assert [rcpts for _, rcpts, _ in box.messages] == [[BOURG]] and box.flaky[BOURG] == 0
