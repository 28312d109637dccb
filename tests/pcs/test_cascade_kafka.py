"""The cascade for real: a heatwave CAP alert on two towns, the router, the PCS worker, an SMTP
server. Every representative notified once; silent ones replaced by their substitute, then the
safeguard cell; a kill -9 mid-cascade doubles nobody and forgets nobody."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from hub_helpers import wait_for
from pcs_helpers import cascade_events, deployment, free_port, pcs_worker, raw_topic_bytes, router
from prometheus_client.parser import text_string_to_metric_families
from test_activation import heatwave

from veille.local.receivers import Mailbox
from veille.pcs import events
from veille.pcs.cascade import CELL
from veille.producers.sdk import Publisher
from veille.topics import Topics

pytestmark = pytest.mark.kafka

# Five representatives reached, each chain: themselves, one substitute, the cell.
FIRST = {"r-35401-centre", "r-35401-gare", "r-35401-residence-du-parc", "r-35402-bourg", "r-35402-la-noe"}
ALL_STEPS = 15


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        yield box, port
    finally:
        smtp.stop()


def publish_heatwave(settings: Any) -> None:
    with Publisher(settings, client_id="test-pcs") as publisher:
        publisher.publish(heatwave(), record_type="Alert")
        assert publisher.flush().ok


def notified(evs: list[Any]) -> list[events.NotifiedEvent]:
    return [e for e in evs if isinstance(e, events.NotifiedEvent)]


def test_heatwave_reaches_every_representative_once_then_substitutes_then_cells(
        kafka: Any, tmp_path: Path, mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    settings = deployment(kafka, tmp_path)
    r, w = router(settings).start(), pcs_worker(settings, port).start()
    try:
        publish_heatwave(settings)
        evs = cascade_events(settings, lambda out: len(notified(out)) >= ALL_STEPS, timeout=120)
        scraped = urllib.request.urlopen(w.info("pcs.json")["metrics"], timeout=10).read().decode()
    finally:
        w.stop()
        r.stop()
    sent = notified(evs)
    assert len(sent) == ALL_STEPS, w.log()
    assert {n.target for n in sent if n.step == 0} == FIRST
    assert len({n.notification for n in sent}) == ALL_STEPS  # nobody twice
    activations = [e for e in evs if isinstance(e, events.ActivationEvent)]
    assert {a.municipality for a in activations} == {"35401", "35402"}
    # Silence: each watch went to its substitute (step 1) then to the cell (step 2).
    assert Counter(n.step for n in sent) == {0: 5, 1: 5, 2: 5}
    assert {n.target for n in sent if n.step == 2} == {CELL}
    assert next(n.target for n in sent if n.owner == "r-35401-centre" and n.step == 1) == "r-35401-gare"
    # E-mails: all but the hamlet's representative (SMS only, no gateway here: recorded as failed).
    ids = [m["Message-ID"] for _, _, m in box.messages]
    assert len(ids) == len(set(ids)) == 13
    to = Counter(rcpt for _, rcpts, _ in box.messages for rcpt in rcpts)
    assert to["pcs@montveille.example"] == 3 and to["pcs@saint-meen.example"] == 2
    assert to["centre@montveille.example"] == 3  # own area, and substitute for the building and gare
    body = next(m for _, rcpts, m in box.messages if rcpts == ["bourg@saint-meen.example"])
    assert "/pcs/" in body.get_content() and "besoin d'aide" in body.get_content()
    assert {n.outcome for n in sent if n.target == "r-35402-la-noe"} == {"failed"}
    total = {(s.labels["step"], s.labels["outcome"]): s.value
             for f in text_string_to_metric_families(scraped) if f.name == "veille_pcs_notifications"
             for s in f.samples if s.name.endswith("_total")}
    assert total == {("owner", "delivered"): 4, ("owner", "failed"): 1, ("substitute", "delivered"): 4,
                     ("substitute", "failed"): 1, ("cell", "delivered"): 5}


def test_kill_9_mid_cascade_doubles_nobody_and_forgets_nobody(
        kafka: Any, tmp_path: Path, mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    settings = deployment(kafka, tmp_path)
    r, w = router(settings).start(), pcs_worker(settings, port).start()
    try:
        publish_heatwave(settings)
        wait_for(lambda: len(box.messages) >= 3, 120, "the first notifications")
        os.kill(w.pid, signal.SIGKILL)
        w.proc.wait()  # type: ignore[union-attr]
        w = pcs_worker(settings, port).start()
        evs = cascade_events(settings, lambda out: len({n.notification for n in notified(out)}) >= ALL_STEPS,
                             timeout=180)
    finally:
        w.stop()
        r.stop()
    ids = {n.notification for n in notified(evs)}
    assert len(ids) == ALL_STEPS, w.log()  # nobody forgotten
    msg_ids = Counter(m["Message-ID"] for _, _, m in box.messages)
    assert len(msg_ids) == 13 and max(msg_ids.values()) == 1, msg_ids  # nobody twice


def test_no_register_content_on_any_topic(kafka: Any, tmp_path: Path,
                                          mailbox: tuple[Mailbox, int]) -> None:
    """The register's names are on no topic: the cascade carries ids and counts only."""
    from veille.pcs.register import Register, new_key

    _box, port = mailbox
    settings = deployment(kafka, tmp_path)
    key = new_key()
    reg = Register(settings.state_dir / "pcs-register", key.encode())
    reg.add("35401", name="Germaine Lebrun-Quintard", address="12 rue de la Gare", needs="oxygène",
            representative="r-35401-gare")
    r, w = router(settings).start(), pcs_worker(settings, port).start()
    try:
        publish_heatwave(settings)
        cascade_events(settings, lambda out: len(notified(out)) >= 5, timeout=120)
    finally:
        w.stop()
        r.stop()
    t = Topics(settings.topic_prefix)
    everything = raw_topic_bytes(settings, [t.pcs_cascade, t.routed, t.alerts])
    for secret in ("Germaine", "Lebrun", "oxyg"):
        assert secret.encode() not in everything
        assert secret not in w.log()


def forget_committed_offsets(settings: Any, group: str, timeout: float = 90) -> None:
    """Delete ``group`` (its committed offsets), once the broker sees it empty: a static member
    stays in its group until its session times out."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka_client_config())
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.delete_consumer_groups([group], request_timeout=10)[group].result()
            return
        except Exception as exc:  # GROUP_NOT_EMPTY until the session ends
            assert time.monotonic() < deadline, f"{group} never emptied: {exc}"
            time.sleep(1)


def test_a_worker_re_reading_its_input_sends_nobody_again_and_records_every_notification(
        kafka: Any, tmp_path: Path, mailbox: tuple[Mailbox, int]) -> None:
    """After a crash the worker re-reads what it had not committed: events whose notifications it
    had sent (the Table remembers them) but whose ``notified`` events a kill -9 may have cut off.
    Here the whole input is re-read (the group's offsets deleted): no e-mail goes out again, and
    every notification's ``notified`` event is published again, the same event (the CI run where
    a kill -9 between the Table's changelog and the event lost the record of a sent message)."""
    box, port = mailbox
    settings = deployment(kafka, tmp_path)
    r, w = router(settings).start(), pcs_worker(settings, port).start()
    try:
        publish_heatwave(settings)
        first = notified(cascade_events(settings, lambda out: len(notified(out)) >= ALL_STEPS, timeout=120))
        w.stop()
        sent = len(box.messages)
        forget_committed_offsets(settings, f"{settings.topic_prefix}-pcs")
        w = pcs_worker(settings, port).start()
        evs = cascade_events(settings, lambda out: len(notified(out)) >= 2 * ALL_STEPS, timeout=120)
        time.sleep(2)  # anything sent again would be in the mailbox by now
    finally:
        w.stop()
        r.stop()
    assert len(box.messages) == sent == 13, w.log()  # nobody twice
    again = Counter(n.notification for n in notified(evs))
    assert len(again) == ALL_STEPS and min(again.values()) == 2, again
    assert {e.model_dump_json() for e in notified(evs)} == {e.model_dump_json() for e in first}
