"""``veille deliver run`` on the real broker with a case on three bodies' dispatch topics (Dispatch
v2, published here as the grouping worker will), against real peers, killed with kill -9 while
the case's update e-mail waits for its window: after the restart one update e-mail carries the
latest count; the webhook body got every update as an update; the Open311 body one request."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from hub_helpers import HubProcess, hub_settings, read_topics, wait_for
from test_deliverer import EMAIL, OPEN311, WEBHOOK, Peers, deliverer_env, peers, territory_with_delivery
from test_delivery_cases import case_dispatches

from veille.topics import Topics

pytestmark = pytest.mark.kafka
__all__ = ["peers"]  # the bodies' systems (module fixture)


def _updates(p: Peers) -> list[Any]:
    return [m for _, _, m in p.mailbox.messages if str(m["Subject"]).startswith("[Veille] Mise à jour")]


def test_a_case_by_every_method_through_a_kill(kafka: Any, tmp_path: Path, peers: Peers) -> None:
    settings = hub_settings(kafka.settings, tmp_path, territory_dir=territory_with_delivery(tmp_path, peers))
    topics = Topics(settings.topic_prefix)
    env = {**deliverer_env(peers), "VEILLE_DELIVERY_EMAIL_UPDATE_MINUTES": "10"}
    cases = {agency: case_dispatches(4, agency=agency) for agency in (WEBHOOK, EMAIL, OPEN311)}
    router = HubProcess(settings, "router", "run", "--metrics-port", "0").start()  # ensures the topics
    deliverer = HubProcess(settings, "deliver", "run", "--metrics-port", "0", env=env).start()
    try:
        router.info("router.json")
        deliverer.info("deliver.json")
        producer = Producer(settings.kafka_client_config())
        for agency, dispatches in cases.items():
            for d in dispatches:
                producer.produce(topics.dispatch(agency), d.encode(), key=d.event_id.encode())
        assert producer.flush(15) == 0
        opened_mail = str(cases[EMAIL][0].id)
        mails = peers.mailbox.messages
        wait_for(lambda: any(str(m["X-Veille-Dispatch-Id"]) == opened_mail for _, _, m in mails), 60,
                 "the case's opening e-mail")
        wait_for(lambda: len({p["dispatch_id"] for p in peers.receiver.received}) == 4, 60, "the webhooks")
        time.sleep(3)  # offsets of what is done are committed; the updates' e-mail waits 10 min
        assert _updates(peers) == []
        deliverer.kill()
        deliverer.start()
        wait_for(lambda: len(_updates(peers)) >= 1, 60, "the update e-mail after the restart")
        (update,) = _updates(peers)
        assert "(4 signalements liés)" in str(update["Subject"])
        assert str(update["X-Veille-Dispatch-Id"]) == str(cases[EMAIL][-1].id)
        # Webhook: every report of the case, the later ones as updates of the opening.
        bodies = {p["dispatch_id"]: p for p in peers.receiver.received}
        assert sorted(b["case"]["role"] for b in bodies.values()) == ["opened", "update", "update", "update"]
        assert {b["case"]["update_of"] for b in bodies.values() if b["case"]["role"] == "update"} == {
            str(cases[WEBHOOK][0].id)}
        # Open311: only the case's request, never an update.
        assert {f["attribute[veille_dispatch_id]"] for f in peers.geo.posted} == {str(cases[OPEN311][0].id)}
        # Receipts: the updates' e-mails coalesced, Open311's skipped, each said so.
        want = {str(d.id) for d in cases[EMAIL][1:3]} | {str(d.id) for d in cases[OPEN311][1:]}
        receipts = read_topics(settings, [topics.delivery], timeout=30, until=lambda out: want <= {
            str(d.value["dispatch_id"]) for _, d in out if (d.value["reply"] or "").startswith(
                ("coalesced:", "skipped:"))})
        replies = {(str(d.value["dispatch_id"]), (d.value["reply"] or "").split(":")[0]) for _, d in receipts}
        assert {(str(d.id), "coalesced") for d in cases[EMAIL][1:3]} <= replies
        assert {(str(d.id), "skipped") for d in cases[OPEN311][1:]} <= replies
    finally:
        deliverer.stop()
        router.stop()
