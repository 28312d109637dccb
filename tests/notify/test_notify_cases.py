"""Residents of a case hear its changes (veille/notify/cases.py): pure folding of the known cases
of tests/case_helpers.py, and on the real broker with a real notifier process and SMTP server: a
resident who reported a3 (an update for every body: never answered on its own, its partition
holding none of the case's status updates) hears once that the case was acknowledged and once that
it is on site; the split report's resident hears of its own dispatch only; a restarted notifier
tells nothing again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from case_helpers import Cases
from confluent_kafka import Producer
from hub_helpers import HubProcess, hub_settings, wait_for
from notify_helpers import free_port
from sink_helpers import now_ms
from test_notifier import caught_up, mails_to

from veille.config import Settings
from veille.local.receivers import Mailbox
from veille.notify.cases import CaseStates
from veille.notify.changes import Phase
from veille.notify.consent import ConsentWriter
from veille.schemas.models import CaseSplit, NotificationConsent, Record, StatusUpdate
from veille.topics import Topics


def test_case_states_fold_every_report_of_a_case() -> None:
    cases = Cases(now_ms() - timedelta(hours=3))
    states = CaseStates()
    for rec in cases.routed():
        states.apply(rec)
    a, b = str(cases.a1), str(cases.b1)
    assert states.state(a) is not None and states.state(a).phase is Phase.transmitted  # type: ignore[union-attr]
    assert states.apply(cases.status(cases.a2, "pm-35402", "acknowledged", 8)) == a
    assert states.state(a).phase is Phase.acknowledged  # type: ignore[union-attr]
    assert states.apply(cases.status(cases.a2, "pm-35402", "acknowledged", 8)) is None  # a re-delivery
    assert states.apply(cases.split()) is None
    assert states.apply(cases.status(cases.a4, "siba", "resolved", 30)) is None  # a4 answers on its own
    assert states.apply(cases.status(cases.a1, "siba", "on_site", 40)) == a
    assert states.state(a).phase is Phase.on_site  # type: ignore[union-attr]
    assert states.state(a).generation == 0  # type: ignore[union-attr]  # no re-routing in A
    assert states.state(b).phase is Phase.transmitted  # type: ignore[union-attr]
    assert states.apply(cases.status(cases.u1, "pm-35401", "resolved", 120)) is None  # not grouped
    assert states.state(str(cases.u1)) is None and len(states) == 3


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        yield box, port
    finally:
        smtp.stop()


def publish(settings: Settings, records: list[Record]) -> None:
    """As the router writes them: key = the incident id's bytes."""
    producer = Producer(settings.kafka_client_config())
    for rec in records:
        key = rec.incident_id if isinstance(rec, StatusUpdate | CaseSplit) else rec.id  # type: ignore[attr-defined]
        producer.produce(Topics(settings.topic_prefix).routed, key=key.bytes, value=rec.encode())
    assert producer.flush(10) == 0


def told(box: Mailbox, address: str) -> list[str]:
    return [str(m["Subject"]).rsplit(": ", 1)[-1] for m in mails_to(box, address)]


@pytest.mark.kafka
def test_residents_of_a_case_hear_its_changes_once(kafka: Any, tmp_path: Path,
                                                   mailbox: tuple[Mailbox, int]) -> None:
    box, smtp_port = mailbox
    settings = hub_settings(kafka.settings, tmp_path)
    env = {"VEILLE_DELIVERY_SMTP_HOST": "127.0.0.1", "VEILLE_DELIVERY_SMTP_PORT": str(smtp_port),
           "VEILLE_DELIVERY_SMTP_SECURITY": "none", "VEILLE_SINK_SESSION_SECONDS": "6"}
    cases = Cases(datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2))
    member, split, first = "membre@example.fr", "separe@example.fr", "premier@example.fr"
    writer = ConsentWriter(settings, "test-case-consents")
    for incident, address in ((cases.a3, member), (cases.a4, split), (cases.a1, first)):
        assert writer.write(NotificationConsent(incident_id=incident, reference="ABCD-EFGH-JKMN-PQRS",
                                                channel="email", address=address,
                                                consented_at=datetime.now(UTC)))
    writer.close()
    publish(settings, list(cases.routed()))
    notifier = HubProcess(settings, "notify", "run", "--metrics-port", "0", env=env).start()
    try:
        notifier.info("notify.json")
        # pm-35402 acknowledges a2 (its first dispatch of case A): a record keyed by a2.
        publish(settings, [cases.status(cases.a2, "pm-35402", "acknowledged", 8)])
        # a4 was still in the case then: its resident hears it too.
        wait_for(lambda: all(told(box, a) == ["pris en compte"] for a in (member, first, split)),
                 60, "the case's acknowledgement told to a3's, a1's and a4's residents")
        # The syndicate splits a4 out, then is on site on a1 and resolves a4 on its own dispatch. The
        # split is read on a4's partition, the case's change on a1's: a change read before the
        # split is still a4's (docs/grouping.md), so the split is waited for first.
        publish(settings, [cases.split()])
        wait_for(lambda: caught_up(settings), 60, "the split read")
        publish(settings, [cases.status(cases.a1, "siba", "on_site", 40),
                           cases.status(cases.a4, "siba", "resolved", 30)])
        wait_for(lambda: told(box, member) == ["pris en compte", "intervention en cours"]
                 and told(box, split)[-1:] == ["résolu"], 60, "the case on site, a4 resolved")
        wait_for(lambda: caught_up(settings), 60, "the notifier's commits")
    finally:
        notifier.stop()
    assert told(box, first) == ["pris en compte", "intervention en cours"]
    assert told(box, split) == ["pris en compte", "résolu"]  # never the case's on-site
    # A restarted notifier (its state from the changelog, the cases read again from the topic):
    # nothing told twice, and the case's next change told once (so it did read the cases).
    again = HubProcess(settings, "notify", "run", "--metrics-port", "0", env=env).start()
    try:
        again.info("notify.json")
        publish(settings, [cases.status(cases.a1, "siba", "resolved", 50),
                           cases.status(cases.a2, "pm-35402", "resolved", 55)])
        wait_for(lambda: told(box, member)[-1:] == ["résolu"] and told(box, first)[-1:] == ["résolu"], 60,
                 "the case resolved, told by the restarted notifier")
        wait_for(lambda: caught_up(settings), 60, "the restarted notifier's commits")
    finally:
        again.stop()
    assert told(box, member) == told(box, first) == ["pris en compte", "intervention en cours", "résolu"]
    assert told(box, split) == ["pris en compte", "résolu"]
    assert len(box.messages) == 8  # 3 + 3 + 2: nothing else, nothing twice
    for proc in (notifier, again):
        assert "@example.fr" not in proc.log()
